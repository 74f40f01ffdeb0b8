"""`eutirads models add|list|activate` and `eutirads users token NAME`."""

from __future__ import annotations

import pytest

from diagnosis_fixtures import *  # noqa: F401,F403 - fixtures
from eutirads.cli import main

pytestmark = pytest.mark.django_db


def test_models_add_list_and_activate_keep_exactly_one_model_active(dx_home, tiny_bundle,
                                                                    capsys):
    from eutirads.web.diagnosis.models import ModelBundle

    assert main(["models", "add", str(tiny_bundle)]) == 0
    assert main(["models", "add", str(tiny_bundle)]) == 0
    first, second = ModelBundle.objects.order_by("id")
    assert first.active and not second.active  # the first one registered is active
    assert main(["models", "activate", str(second.pk)]) == 0
    assert list(ModelBundle.objects.filter(active=True)) == [second]
    assert main(["models", "add", str(tiny_bundle), "--activate"]) == 0
    assert ModelBundle.objects.filter(active=True).get().pk > second.pk
    capsys.readouterr()
    main(["models", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and sum(line.startswith("*") for line in lines) == 1
    assert "accuracy 0.610" in lines[0]
    # the bundle was copied under a generated name
    assert sorted(p.name for p in (dx_home / "bundles").iterdir()) == \
        sorted(b.folder for b in ModelBundle.objects.all())


def test_models_add_refuses_a_folder_that_is_not_a_bundle_with_a_one_line_error(dx_home,
                                                                                tmp_path,
                                                                                capsys):
    assert main(["models", "add", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eutirads: error:") and "not a model bundle" in err
    assert "\n" not in err
    assert main(["models", "activate", "99"]) == 2


def test_users_token_prints_a_working_token_once(radiologist, active_bundle, client, capsys):
    assert main(["users", "token", "alice"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 40
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_users_token_refuses_unknown_users_and_users_without_a_role(no_role_user, capsys):
    assert main(["users", "token", "ghost"]) == 2
    assert main(["users", "token", "mallory"]) == 2
    assert "no role" in capsys.readouterr().err


def test_the_demo_step_registers_the_bundle_and_prints_a_working_account_and_token(
        dx_home, tiny_bundle, client, capsys, tmp_path):
    import diagnosis_samples as samples
    from eutirads.web.diagnosis.demo import serve_demo
    from eutirads.web.diagnosis.models import ModelBundle

    (tmp_path / "phantom" / "3").mkdir(parents=True)
    (tmp_path / "phantom" / "3" / "a.png").write_bytes(samples.png_bytes())
    assert serve_demo(tiny_bundle, serve=False, samples=tmp_path / "phantom") == 0
    out = capsys.readouterr().out
    password = out.split("password ", 1)[1].split()[0]
    token = out.split("API token for 'demo': ", 1)[1].split()[0]
    assert client.post("/login/", {"username": "demo", "password": password}).status_code == 302
    client.logout()
    assert ModelBundle.objects.get().active
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert str(tmp_path / "phantom" / "3" / "a.png") in out and "Not serving" in out


def test_the_demo_step_loads_its_dataset_into_a_labeling_project_the_demo_account_reads(
        dx_home, tiny_bundle, client, capsys, tmp_path):
    import diagnosis_samples as samples
    from eutirads.data.manifest import write_manifest
    from eutirads.web.diagnosis.demo import serve_demo

    dataset = tmp_path / "dataset"
    (dataset / "images").mkdir(parents=True)
    (dataset / "images" / "a.png").write_bytes(samples.png_bytes())
    write_manifest(dataset, [{"path": "images/a.png", "label": "3", "patient_id": "p1"}])
    assert serve_demo(tiny_bundle, serve=False, dataset=dataset) == 0
    out = capsys.readouterr().out
    password = out.split("password ", 1)[1].split()[0]
    assert "/labeling/demo/" in out
    client.post("/login/", {"username": "demo", "password": password})
    assert client.get("/labeling/demo/").status_code == 200


def _audit(action: str):
    from eutirads.web.core.models import AuditEvent

    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_users_token_expires_lists_and_revokes_with_every_step_audited(radiologist, client,
                                                                       capsys):
    from datetime import timedelta

    from django.utils import timezone

    from eutirads.web.diagnosis.models import ApiToken

    assert main(["users", "token", "alice", "--expires", "30"]) == 0
    out = capsys.readouterr().out
    token = out.split()[-1]  # still the last word printed
    row = ApiToken.objects.get()
    assert row.expires_at and timedelta(days=29) < row.expires_at - timezone.now() <= \
        timedelta(days=30)
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert main(["users", "tokens", "alice"]) == 0
    listing = capsys.readouterr().out
    assert f"{row.pk}\talice\t{row.prefix}…\tactive" in listing and token not in listing
    # expiry enforced
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401
    assert _audit("diagnosis.token_refused")[-1].after == {"reason": "expired"}
    main(["users", "tokens"])
    assert "\texpired\t" in capsys.readouterr().out
    # revoke by id
    second = main(["users", "token", "alice"]) == 0 and capsys.readouterr().out.split()[-1]
    second_row = ApiToken.objects.get(prefix=second[:8])
    assert main(["users", "revoke", str(second_row.pk)]) == 0
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {second}").status_code == 401
    assert _audit("diagnosis.token_refused")[-1].after == {"reason": "revoked"}
    assert [e.target for e in _audit("diagnosis.token_create")] == \
        [f"token #{row.pk}", f"token #{second_row.pk}"]
    assert _audit("diagnosis.token_revoke")[-1].target == f"token #{second_row.pk}"
    assert main(["users", "revoke", "9999"]) == 2


def test_revoke_all_and_re_adding_a_user_revoke_every_old_token(radiologist, client, capsys,
                                                                monkeypatch):
    import io

    from eutirads.web.diagnosis.models import ApiToken

    for _ in range(2):
        main(["users", "token", "alice"])
    main(["users", "revoke", "--all", "alice"])
    assert "revoked 2 API token(s)" in capsys.readouterr().out
    assert not any(r.status() == "active" for r in ApiToken.objects.all())
    main(["users", "token", "alice"])
    token = capsys.readouterr().out.split()[-1]
    monkeypatch.setattr("sys.stdin", io.StringIO("a-new-long-password-77\n"))
    assert main(["users", "add", "alice", "--role", "radiologist"]) == 0
    assert "revoked 1 API token(s) of alice" in capsys.readouterr().out
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401
    assert _audit("diagnosis.token_revoke")[-1].after["reason"] == "user re-added"


def test_a_token_deleted_in_the_django_admin_is_audited_with_the_admins_name(radiologist,
                                                                             client, capsys):
    from eutirads.web.core.accounts import add_user
    from eutirads.web.diagnosis.models import ApiToken
    from eutirads.web.diagnosis.tokens import create_token

    add_user("chief", role="admin", password=None)
    from django.contrib.auth import get_user_model

    chief = get_user_model().objects.get(username="chief")
    create_token(radiologist)
    row = ApiToken.objects.get()
    client.force_login(chief)
    response = client.post(f"/admin/diagnosis/apitoken/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not ApiToken.objects.exists()
    (event,) = _audit("diagnosis.token_delete")
    assert event.target == f"token #{row.pk}" and event.username == "chief"
    assert event.after["owner"] == "alice"
