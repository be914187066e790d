"""The catalogue and its downloader, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.corpus import Entry, download, fetch, is_present, load_catalog
from charlm.corpus.catalog import _CHECKOUT_CATALOG
from charlm.errors import CorpusError, DownloadError
from tests.conftest import SHARED_CORPORA, TINY_TEXT, shared_corpus
from tests.helpers import TINY_TRAIN_ARGS

BOOK = TINY_TEXT.encode("utf-8")
REQUIRED = {"timemachine", "tinyshakespeare", "alice", "pride-and-prejudice", "frankenstein"}
IMMUTABLE = re.compile(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/.+")


class Handler(SimpleHTTPRequestHandler):
    """Files from a directory, plus hostile mirrors: /truncated (a Content-Length it does not
    honour), /endless (64 MiB for a 2 kB book: endless to the downloader), /larger (a larger
    Content-Length), /trickle (one byte every 50 ms) and /stall (headers, then nothing)."""

    requests: list[str] = []
    sent = 0  # bytes of the last hostile body that reached the socket

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        bodies = {
            "/truncated": (len(BOOK), [BOOK[: len(BOOK) // 3]]),
            "/endless": (None, (b"x" * (1 << 16) for _ in range(1024))),
            "/larger": (len(BOOK) * 1000, (BOOK for _ in range(1000))),
            "/trickle": (len(BOOK), (bytes([b]) for b in BOOK)),
            "/stall": (len(BOOK), []),
        }
        if self.path not in bodies:
            return super().do_GET()
        length, chunks = bodies[self.path]
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        type(self).sent = 0
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
                if self.path == "/trickle":
                    time.sleep(0.05)
            if self.path == "/stall":
                time.sleep(2)
        except OSError:  # the downloader hung up
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def serve(directory: Path) -> Iterator[str]:
    Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "site"
    root.mkdir()
    (root / "tiny.txt").write_bytes(BOOK)
    yield from serve(root)


def entry(url: str, data: bytes = BOOK, name: str = "tiny", sha256: str | None = None) -> Entry:
    digest = sha256 or hashlib.sha256(data).hexdigest()
    return Entry(name=name, title="A Tiny Book", url=url, size=len(data), sha256=digest)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- the catalogue itself --------------------------------------------------------------------


def test_catalogue_lists_the_required_books_at_immutable_urls():
    catalog = load_catalog(_CHECKOUT_CATALOG)
    assert REQUIRED <= set(catalog)
    chinese = [e for e in catalog.values() if re.search(r"[\u4e00-\u9fff]", e.title)]
    assert chinese
    for item in catalog.values():
        assert IMMUTABLE.fullmatch(item.url), item.url


@pytest.mark.corpus
def test_catalogue_hashes_and_sizes_match_the_shared_copies():
    shared_corpus("SHA256SUMS")
    sums = {}
    for line in (SHARED_CORPORA / "SHA256SUMS").read_text().splitlines():
        digest, relative = line.split()
        sums[digest] = SHARED_CORPORA / relative
    for item in load_catalog(_CHECKOUT_CATALOG).values():
        assert item.sha256 in sums, item.name
        local = sums[item.sha256]
        assert local.stat().st_size == item.size, item.name
        assert hashlib.sha256(local.read_bytes()).hexdigest() == item.sha256


def test_a_catalogue_entry_without_a_hash_is_refused(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text('[book]\ntitle = "B"\nurl = "http://x/b.txt"\nsize = 3\nsha256 = "abc"\n')
    with pytest.raises(CorpusError, match="64 hexadecimal"):
        load_catalog(bad)


# --- downloads -------------------------------------------------------------------------------


def test_good_download_is_verified_and_then_a_no_op(site, tmp_path):
    corpora = tmp_path / "corpora"
    book = entry(f"{site}/tiny.txt")
    fetched = fetch(book, corpora)
    assert fetched.downloaded and fetched.path.read_bytes() == BOOK
    assert leftovers(corpora) == ["tiny.txt"] and is_present(book, corpora)
    again = fetch(book, corpora)
    assert not again.downloaded and Handler.requests == ["/tiny.txt"]


@pytest.mark.corpus
def test_download_of_a_real_catalogue_book_from_the_shared_corpora(tmp_path):
    shared_corpus("timemachine/timemachine.txt")
    real = load_catalog(_CHECKOUT_CATALOG)["timemachine"]
    for base in serve(SHARED_CORPORA):
        local = Entry(**{**real.__dict__, "url": f"{base}/timemachine/timemachine.txt"})
        fetched = fetch(local, tmp_path)
    assert fetched.downloaded and is_present(real, tmp_path)


def test_wrong_checksum_saves_nothing(site, tmp_path):
    with pytest.raises(DownloadError, match="not the catalogued file.*nothing was saved"):
        fetch(entry(f"{site}/tiny.txt", sha256="0" * 64), tmp_path / "corpora")
    assert leftovers(tmp_path / "corpora") == []


def test_truncated_transfer_saves_nothing(site, tmp_path):
    with pytest.raises(DownloadError, match="stopped after"):
        fetch(entry(f"{site}/truncated"), tmp_path / "corpora")
    assert leftovers(tmp_path / "corpora") == []


def test_not_found_is_reported_with_its_status(site, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(entry(f"{site}/missing.txt"), tmp_path / "corpora")
    assert leftovers(tmp_path / "corpora") == []


def test_a_mirror_that_sends_more_than_the_catalogue_says_is_cut_off(site, tmp_path):
    # Unchecked, an endless body filled the disk at 200 MB/s, a larger one was read whole.
    larger = r"sends more \(2,100,000 bytes\) than the catalogued"
    for path, message in [("endless", "sends more than the catalogued"), ("larger", larger)]:
        started = time.perf_counter()
        with pytest.raises(DownloadError, match=message):
            fetch(entry(f"{site}/{path}"), tmp_path / "corpora")
        assert time.perf_counter() - started < 5
        assert leftovers(tmp_path / "corpora") == []
        if path == "endless":  # the downloader hung up long before the 64 MiB
            assert Handler.sent < 16 << 20


def test_a_mirror_that_trickles_or_stalls_meets_the_deadline(site, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "DEADLINE_GRACE_SECONDS", 0.5)
    started = time.perf_counter()
    with pytest.raises(DownloadError, match="was too slow"):
        fetch(entry(f"{site}/trickle"), tmp_path / "corpora")
    assert time.perf_counter() - started < 5
    with pytest.raises(DownloadError, match="stopped after 0 of 2,100 bytes.*timed out"):
        fetch(entry(f"{site}/stall"), tmp_path / "corpora", timeout=0.3)
    assert leftovers(tmp_path / "corpora") == []


def test_a_killed_fetchs_part_file_is_removed_by_the_next_fetch(site, tmp_path):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    stale, live = corpora / ".tiny.txt.dead1234.part", corpora / ".tiny.txt.live5678.part"
    stale.write_bytes(BOOK[:100])  # what a SIGKILLed fetch leaves: nothing can delete it then
    live.write_bytes(BOOK[:100])  # another fetch's, still being written
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    assert fetch(entry(f"{site}/tiny.txt"), corpora).downloaded
    assert leftovers(corpora) == [live.name, "tiny.txt"]


def test_a_catalogue_that_is_a_device_or_huge_is_refused(tmp_path):
    # /dev/zero was read until memory ran out: a process of its own, with a memory cap.
    done = subprocess.run(
        [sys.executable, "-m", "charlm", "corpus", "list"],
        env={**os.environ, "CHARLM_CATALOG": "/dev/zero"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("Error:") and done.stderr.count("\n") == 1
    assert "is not a regular file" in done.stderr
    big = tmp_path / "catalog.toml"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse
    with pytest.raises(CorpusError, match="more than charlm accepts"):
        load_catalog(big)


def test_connection_refused_is_reported(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="refused.*CHARLM_CORPUS_MIRROR"):
        fetch(entry(f"http://127.0.0.1:{port}/tiny.txt"), tmp_path / "corpora")
    assert leftovers(tmp_path / "corpora") == []


def test_a_failing_mirror_is_named_not_advised(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/books"
    monkeypatch.setenv("CHARLM_CORPUS_MIRROR", mirror)
    with pytest.raises(DownloadError) as info:
        fetch(entry("https://example.invalid/tiny.txt"), tmp_path / "corpora")
    message = str(info.value)
    assert f"from {mirror}/tiny.txt" in message
    assert message.endswith(f"check the network and the mirror CHARLM_CORPUS_MIRROR={mirror}")
    assert "to a mirror" not in message


def test_a_damaged_local_copy_is_replaced(site, tmp_path):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "tiny.txt").write_bytes(BOOK[:10])
    assert fetch(entry(f"{site}/tiny.txt"), corpora).downloaded
    assert (corpora / "tiny.txt").read_bytes() == BOOK


def test_mirror_url_and_mirror_directory_replace_the_source(site, tmp_path, monkeypatch):
    unreachable = entry("http://127.0.0.1:9/elsewhere/tiny.txt")
    monkeypatch.setenv("CHARLM_CORPUS_MIRROR", site)
    assert fetch(unreachable, tmp_path / "a").downloaded
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.txt").write_bytes(BOOK)
    monkeypatch.setenv("CHARLM_CORPUS_MIRROR", str(mirror))
    fetched = fetch(unreachable, tmp_path / "b")
    assert fetched.downloaded and fetched.path.read_bytes() == BOOK
    (mirror / "tiny.txt").unlink()
    with pytest.raises(DownloadError, match="mirror has no"):
        fetch(unreachable, tmp_path / "c")


# --- the commands ----------------------------------------------------------------------------


@pytest.fixture
def catalogue(site, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "catalog.toml"
    book = entry(f"{site}/tiny.txt")
    path.write_text(
        f'[tiny]\ntitle = "A Tiny Book"\nurl = "{book.url}"\nsize = {book.size}\n'
        f'sha256 = "{book.sha256}"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("CHARLM_CATALOG", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def test_corpus_fetch_and_list(catalogue, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(cli, ["corpus", "list"])
    assert listed.exit_code == 0 and re.search(r"tiny\s+\S+ kB\s+-\s+A Tiny Book", listed.output)
    fetched = runner.invoke(cli, ["corpus", "fetch", "tiny"])
    assert fetched.exit_code == 0 and "downloaded tiny" in fetched.output
    assert (tmp_path / "corpora" / "tiny.txt").read_bytes() == BOOK
    assert "already" in runner.invoke(cli, ["corpus", "fetch", "tiny"]).output
    assert "corpora/tiny.txt" in runner.invoke(cli, ["corpus", "list"]).output
    unknown = runner.invoke(cli, ["corpus", "fetch", "nonesuch"])
    assert unknown.exit_code == 2 and "no book named 'nonesuch'" in unknown.output  # usage
    assert "'charlm corpus list' lists the books" in unknown.output
    assert "did you mean" not in unknown.output
    misspelled = runner.invoke(cli, ["corpus", "fetch", "tinny"])
    assert "no book named 'tinny' in the catalogue; did you mean 'tiny'?" in misspelled.output
    misspelled = runner.invoke(cli, ["train", "Tiny.", "--device", "cpu"])
    assert misspelled.exit_code == 1
    assert "Tiny.: no such file, directory or catalogue book; did you mean 'tiny'?" in (
        misspelled.output
    )


@pytest.mark.slow
def test_train_accepts_a_catalogue_name_and_fetches_it(catalogue, tmp_path):
    args = ["train", "tiny", "--max-steps", "1", *TINY_TRAIN_ARGS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "downloaded tiny" in result.output
    assert (tmp_path / "corpora" / "tiny.txt").is_file()
    assert (tmp_path / "checkpoints" / "tiny" / "config.json").is_file()
