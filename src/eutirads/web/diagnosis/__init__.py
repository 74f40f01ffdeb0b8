"""The diagnosis app: classify an uploaded ultrasound image with the active model bundle,
show the guideline's advice, keep a history, compare readers with the model, and serve
the token-authenticated JSON API (`/api/v1/`)."""
