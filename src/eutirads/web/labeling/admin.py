from django.contrib import admin

from .models import Image, Project, Reading


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "readers_required", "reading_mode", "dataset_root", "created_at")
    fields = ("name", "readers_required", "reading_mode", "queue_order", "self_adjudication",
              "dataset_root")
    readonly_fields = ("dataset_root",)

    def has_add_permission(self, request):
        return False  # projects come from a dataset: 'eutirads label import'


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("project", "position", "path", "claims", "consensus_label")
    list_filter = ("project",)
    readonly_fields = ("project", "path", "position", "row", "claims", "consensus_label",
                       "consensus_by", "consensus_at")

    def has_add_permission(self, request):
        return False


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    """Read-only: labels change only through the reading screen, which keeps history."""

    list_display = ("image", "reader", "done", "label", "flagged", "saved_at")
    list_filter = ("image__project", "reader", "done")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
