"""Admin: registered bundles (activate action), predictions and readings (read-only)."""

from django.contrib import admin, messages

from . import services
from .models import ApiToken, Decision, ModelBundle, Prediction, Reading


@admin.register(ModelBundle)
class ModelBundleAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "version", "active", "added_at")
    readonly_fields = ("name", "version", "folder", "sha256", "class_names", "metadata",
                       "model_card", "active", "added_at")
    actions = ["activate"]

    def has_add_permission(self, request):
        return False  # bundles are registered from a folder: the Models page or the CLI

    @admin.action(description="Make the selected model the active one")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.ERROR)
            return
        bundle = services.activate_bundle(queryset.get().pk, user=request.user)
        self.message_user(request, f"Model #{bundle.pk} is now active.")


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Prediction)
class PredictionAdmin(ReadOnly):
    list_display = ("id", "created_at", "user", "bundle", "channel", "label", "diameter_mm")
    list_filter = ("channel", "label")


@admin.register(Reading)
class ReadingAdmin(ReadOnly):
    list_display = ("id", "created_at", "reader", "item_key", "human_label")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnly):
    """Tokens are made on the command line (the secret is shown once there); here they can
    be revoked or deleted, both audited with the admin's name."""

    list_display = ("id", "prefix", "user", "created_at", "last_used_at", "expires_at",
                    "revoked_at")
    exclude = ("key_hash",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        from .tokens import revoke_token

        for row in queryset:
            revoke_token(row.pk, by=request.user, request=request)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")

    def delete_model(self, request, obj):
        obj._deleted_by = request.user  # the post_delete audit names the admin
        obj.delete()

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(Decision)
class DecisionAdmin(ReadOnly):
    list_display = ("id", "decided_at", "user", "prediction", "label")
