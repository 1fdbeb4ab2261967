"""The stack's PostgreSQL without a server: its configs, how its process is recognised, and the
check that the user it runs as can reach its folder."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from cityhub.schemas.settings import StackSettings
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.postgres import (
    postgres_process,
    render_pg_hba,
    render_postgresql_conf,
    unreachable_folder,
)
from cityhub.streams.devtools.stack.process import cmdline_matches


def test_the_server_listens_on_loopback_only_without_a_socket() -> None:
    layout = StackLayout.under(Path("/srv/state"))
    conf = render_postgresql_conf(StackSettings(postgres_port=6543), layout)
    assert "listen_addresses = '127.0.0.1'" in conf
    assert "port = 6543" in conf
    assert "unix_socket_directories = ''" in conf
    assert f"hba_file = '{layout.postgres_hba}'" in conf
    assert "password_encryption = 'scram-sha-256'" in conf


def test_every_login_needs_a_scram_password_from_loopback() -> None:
    rules = [line.split() for line in render_pg_hba().splitlines() if not line.startswith("#")]
    assert rules == [["host", "all", "all", "127.0.0.1/32", "scram-sha-256"]]


def test_the_server_is_recognised_by_its_config_file_and_stopped_fast() -> None:
    layout = StackLayout.under(Path("/srv/state"))
    spec = postgres_process(layout)
    ours = [
        "/usr/lib/postgresql/15/bin/postgres",
        "-D",
        str(layout.postgres_data),
        "-c",
        f"config_file={layout.postgres_conf}",
    ]
    another = [*ours[:-1], "config_file=/etc/postgresql/15/main/postgresql.conf"]
    assert cmdline_matches(ours, spec.markers)
    assert not cmdline_matches(another, spec.markers)
    assert spec.stop_signal == signal.SIGINT  # fast shutdown: SIGTERM waits for every client


def test_a_folder_closed_to_the_servers_user_is_named() -> None:
    root = Path(tempfile.mkdtemp(prefix="cityhub-reach-"))
    try:
        root.chmod(0o755)
        inner = root / "a" / "b"
        inner.mkdir(parents=True)
        stranger_uid, stranger_gid = os.getuid() + 4242, os.getgid() + 4242
        if unreachable_folder(root, stranger_uid, stranger_gid) is not None:
            pytest.fail(f"{tempfile.gettempdir()} itself is closed to other users")
        assert unreachable_folder(inner, stranger_uid, stranger_gid) is None
        (root / "a").chmod(0o700)
        assert unreachable_folder(inner, stranger_uid, stranger_gid) == root / "a"
        assert unreachable_folder(inner, os.getuid(), os.getgid()) is None  # the owner may
    finally:
        (root / "a").chmod(0o755)
        shutil.rmtree(root)
