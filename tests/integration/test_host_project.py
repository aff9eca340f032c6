"""Hosting Parley in a Django project of one's own (PROTOCOL.md "Hosting your own Django
project"): ``serve.py --settings hostsite.settings`` serves tests/hostproject's plain
Django project, which adds ``chat`` to INSTALLED_APPS and includes ``chat.urls`` under
``/chat/``: its own page, the chat pages and API under the prefix, live chat at the
port's root, Parley's and the project's static files, the admin; and the Python API from
a process with those settings. Then ``pip install .`` into a scratch venv gives the
``chat`` app and a working ``parley`` command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from live_clients import WSClient, provision, run
from parley_testing import REPO, ServerProcess

HOST = REPO / "tests" / "hostproject"
PASSWORD = "correct-horse-battery-9"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The host project served with --settings (the runner's own DJANGO_SETTINGS_MODULE,
    project.settings, is in the environment too: the flag must win)."""
    workdir = tmp_path_factory.mktemp("hostsite")
    env = {
        "PYTHONPATH": os.pathsep.join([str(HOST), os.environ.get("PYTHONPATH", "")]),
        "HOSTSITE_DB": str(workdir / "host.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "CHAT_RATE_LIMIT": "0",
    }
    server = ServerProcess(workdir, env=env, args=["--settings", "hostsite.settings"]).start()
    # manage.py for the same project (what the host's own manage.py would be).
    server.manager = ServerProcess(
        workdir / "manage", env={**env, "DJANGO_SETTINGS_MODULE": "hostsite.settings"}
    )
    server.accounts = provision(
        server.manager,
        users=[("alice", PASSWORD), ("bob", PASSWORD), ("boss", PASSWORD, True)],
        rooms=["general"],
    )
    yield server
    server.stop()


def test_the_hosts_own_page_and_static_file(host):
    with host.client() as http:
        page = http.get("/")
        assert page.status_code == 200 and "Welcome to the host site" in page.text
        css = re.search(r'href="(/static/hostsite/[^"]+)"', page.text).group(1)
        own = http.get(css)
        assert own.status_code == 200 and "rebeccapurple" in own.text
        assert own.headers["content-type"].startswith("text/css")


def test_the_chat_pages_and_api_under_the_prefix(host):
    with host.client(cookies={"sessionid": host.accounts["alice"].sessionid}) as http:
        listing = http.get("/chat/")
        assert listing.status_code == 200 and 'href="/chat/rooms/general/"' in listing.text
        page = http.get("/chat/rooms/general/")
        assert page.status_code == 200
        assert 'data-history-url="/chat/api/rooms/general/messages/"' in page.text
        data = json.loads(re.search(r'id="parley-data"[^>]*>(.*?)</script>', page.text).group(1))
        assert data["base"] == "/chat/" and data["room"]["slug"] == "general"
        # Parley's static files, as the page names them.
        for path in re.findall(r'(?:href|src)="(/static/chat/[^"]+)"', page.text):
            assert http.get(path).status_code == 200, path
        api = http.get("/chat/api/rooms/")
        assert api.status_code == 200
        assert "general" in [r["slug"] for r in api.json()["rooms"]]
        # Not at the root: the host's URLconf has no Parley pages there.
        assert http.get("/rooms/general/").status_code == 404


def test_live_chat_at_the_ports_root(host):
    alice, bob = host.accounts["alice"], host.accounts["bob"]

    async def main():
        a = await WSClient.connect(host, "general", alice)
        b = await WSClient.connect(host, "general", bob)
        try:
            for ws in (a, b):
                await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
            seq = await a.send_and_ack("hello from the host site", "host-1")
            got = await b.wait_for(
                lambda f: f.get("type") == "message" and f.get("seq") == seq, what="message"
            )
            return got
        finally:
            await a.close()
            await b.close()

    got = run(main())
    assert got["user"] == "alice" and got["body"] == "hello from the host site"


def test_the_python_api_with_the_hosts_settings(host):
    out = host.manager.manage("parley_send", "general", "bob", "from the host's worker")
    event = json.loads(out)
    with host.client() as http:
        page = http.get("/chat/api/rooms/general/messages/")
    assert event["seq"] in [e["seq"] for e in page.json()["events"]]


def test_the_admin(host):
    with host.client() as http:
        login = http.get("/admin/login/")
        assert login.status_code == 200 and 'name="password"' in login.text
    with host.client(cookies={"sessionid": host.accounts["boss"].sessionid}) as http:
        rooms = http.get("/admin/chat/room/")
        assert rooms.status_code == 200 and "general" in rooms.text


def test_signing_up_uses_the_throttle_cache_parley_adds(host):
    """The host's CACHES has no ``throttle``: chat/conf.py adds it and serve.py made its
    table, so Parley's signup (which counts signups per address there) works."""
    with host.client() as http:
        form = http.get("/accounts/signup/")
        assert form.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        made = http.post(
            "/accounts/signup/",
            data={
                "csrfmiddlewaretoken": token,
                "username": "carol",
                "password1": "a-long-enough-pass-9",
                "password2": "a-long-enough-pass-9",
            },
            headers={"Referer": f"{host.url}/accounts/signup/"},
        )
        assert made.status_code == 302, made.text[:2000]
        assert http.get("/chat/api/me/").json()["user"] == "carol"


def test_pip_install_gives_the_app_and_the_parley_command(tmp_path):
    """``pip install .`` of a copy of the sources (the build writes build/ and egg-info
    beside them) into a scratch venv that sees this venv's packages (no downloads):
    about 5 s."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("chat", "project", "parley_client"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("serve.py", "pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies are this venv's: a .pth puts its site-packages on the new one's path.
    Path(site, "parley-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(python), "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps"]
    done = subprocess.run(
        [*pip, "--no-index", str(source)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    shown = subprocess.run(
        [
            str(python),
            "-c",
            "import chat, project.cli, serve, parley_client; print(chat.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.startswith(site), shown  # the installed copy, not a source tree
    for part in ("parley.py", "templates/chat/room.html", "static/chat/parley-client.js"):
        assert Path(site, "chat", part).exists(), part
    assert Path(site, "chat", "migrations", "0001_initial.py").exists()
    helped = subprocess.run(
        [str(venv / "bin" / "parley"), "serve", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: parley serve" in helped.stdout and "--settings" in helped.stdout
