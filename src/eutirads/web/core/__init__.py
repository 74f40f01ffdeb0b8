"""Core of the web app: roles, access checks, the audit log, login and the base layout.

Other apps use `access.role_required`, `access.has_role` and `audit.record`.
"""
