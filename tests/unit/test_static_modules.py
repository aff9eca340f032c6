"""The browser client's ES modules, collected as DEBUG=0 serves them: every import of every
module names a hashed file (project/storage.py), so a page never mixes the modules of two
deploys, and collectstatic settles (a module naming itself would never settle its hash)."""

from __future__ import annotations

import re

from django.core.management import call_command

IMPORT = re.compile(r'^\s*(?:import|export)\b[^"\']*from\s*["\']([^"\']+)["\']', re.M)
HASHED = re.compile(r"\.[0-9a-f]{12}\.js$")


def test_every_collected_module_imports_hashed_modules(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "project.storage.ParleyStaticFilesStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)
    modules = [p for p in (tmp_path / "chat").rglob("*.js") if HASHED.search(p.name)]
    assert len(modules) > 10
    imports = [(p.name, target) for p in modules for target in IMPORT.findall(p.read_text())]
    assert imports
    assert [(name, t) for name, t in imports if not HASHED.search(t)] == []
