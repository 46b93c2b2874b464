"""Smoke test of what users install: ``python .ci/smoke_wheel.py DIST_DIR``.

1. The wheel and the sdist in DIST_DIR hold every file of ``streamflow/`` in the checkout (Lua
   scripts, ``py.typed``, dashboard assets...), and nothing outside it (no ``consumers``).
2. The wheel goes into a fresh venv (not editable), which then runs from an empty folder, so
   nothing from the checkout can be imported: ``streamflow --help``, ``python -m streamflow
   --help``, ``streamflow add`` and a ``streamflow worker`` that processes the job, on a
   throwaway ``redis-server`` started here on a free loopback port.

Standard library only; exits non-zero with a one-line reason on the first failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "smoke"
DEADLINE_S = 60.0

APP = '''
from streamflow import Job, Router

router = Router()


@router.handler("smoke.ping")
async def ping(job: Job) -> dict[str, object]:
    return {"pong": job.data["n"] + 1}
'''


def fail(message: str) -> None:
    print(f"smoke: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def package_files() -> set[str]:
    """Paths (relative to the checkout) of the files ``streamflow/`` must ship."""
    listed = subprocess.run(["git", "ls-files", "streamflow"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    if listed.returncode == 0 and listed.stdout.strip():
        return set(listed.stdout.split())
    return {str(path.relative_to(ROOT)) for path in (ROOT / "streamflow").rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}


def check_archives(dist: Path) -> Path:
    wheels, sdists = sorted(dist.glob("streamflow-*.whl")), sorted(dist.glob("streamflow-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        fail(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
    wanted = package_files()
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        entry_points = next((wheel.read(n).decode() for n in names
                             if n.endswith(".dist-info/entry_points.txt")), "")
    missing = wanted - set(names)
    if missing:
        fail(f"the wheel lacks {sorted(missing)}")
    stray = {n.split("/")[0] for n in names} - {"streamflow"}
    stray = {top for top in stray if not top.endswith(".dist-info")}
    if stray:
        fail(f"the wheel installs top-level names besides streamflow: {sorted(stray)}")
    if "consumers" in entry_points or "razorpay" in entry_points:
        fail(f"the wheel declares a reference-app command: {entry_points!r}")
    with tarfile.open(sdists[0]) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        in_sdist = {name.removeprefix(top + "/") for name in sdist.getnames()}
    missing = wanted - in_sdist
    if missing:
        fail(f"the sdist lacks {sorted(missing)}")
    folders = {name.split("/")[0] for name in in_sdist if "/" in name}
    stray = {f for f in folders if f != "streamflow" and not f.endswith(".egg-info")}
    if stray:
        fail(f"the sdist holds folders besides streamflow: {sorted(stray)}")
    print(f"smoke: {wheels[0].name} and {sdists[0].name} hold all {len(wanted)} package files")
    return wheels[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    if shutil.which("redis-server") is None:
        fail("redis-server is not on PATH")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + DEADLINE_S
    while not ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            fail(f"redis-server did not answer on 127.0.0.1:{port}")
        time.sleep(0.05)
    return proc, port


def run(args: list[str], folder: Path, env: dict[str, str], expect: str = "") -> str:
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=DEADLINE_S, check=False)
    if done.returncode != 0 or expect not in done.stdout:
        fail(f"{' '.join(args[-4:])} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done.stdout


def smoke(wheel: Path, folder: Path) -> None:
    env_dir = folder / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(wheel)], check=True)
    work = folder / "work"
    work.mkdir()
    (work / "smoke_app.py").write_text(APP)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV") and not key.startswith("STREAMFLOW_")
           and key != "REDIS_URL"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    python, cli = str(bin_dir / "python"), str(bin_dir / "streamflow")

    origin = run([python, "-c", "import streamflow; print(streamflow.__file__)"], work, env)
    if not origin.startswith(str(env_dir)):
        fail(f"streamflow was imported from {origin.strip()}, not from the fresh venv")
    if (bin_dir / "streamflow-razorpay").exists():
        fail("the wheel installed a streamflow-razorpay command")
    if subprocess.run([python, "-c", "import consumers"], cwd=work, env=env,
                      capture_output=True, check=False).returncode == 0:
        fail("the fresh venv can import a top-level `consumers` package")
    run([cli, "--help"], work, env, expect="Usage: streamflow")
    run([python, "-m", "streamflow", "--help"], work, env,
        expect="Job and event pipeline on Redis Streams")

    redis, port = start_redis(folder)
    url = f"redis://127.0.0.1:{port}/0"
    worker: subprocess.Popen[bytes] | None = None
    try:
        run([cli, "--redis-url", url, "add", QUEUE, "smoke.ping", "--create",
             "--data", '{"n": 41}', "--job-id", "smoke-1"], work, env)
        worker = subprocess.Popen([cli, "--redis-url", url, "worker", QUEUE, "--app",
                                   "smoke_app:router", "--log-level", "WARNING"],
                                  cwd=work, env=env)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            info = json.loads(run([cli, "--redis-url", url, "job", QUEUE, "smoke-1", "--json"],
                                  work, env))
            if info.get("state") == "completed":
                break
            if worker.poll() is not None or time.monotonic() > deadline:
                fail(f"the worker did not complete the job: {info}")
            time.sleep(0.1)
        if info.get("result") != {"pong": 42}:
            fail(f"unexpected result {info.get('result')!r}")
        worker.send_signal(signal.SIGTERM)
        if worker.wait(DEADLINE_S) != 0:
            fail(f"the worker exited {worker.returncode} on SIGTERM")
        worker = None
        print("smoke: fresh venv: --help, python -m streamflow, add, worker processed the job")
    finally:
        if worker is not None:
            worker.kill()
        redis.terminate()
        redis.wait(10)


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: python .ci/smoke_wheel.py DIST_DIR")
    wheel = check_archives(Path(sys.argv[1]).resolve())
    with tempfile.TemporaryDirectory(prefix="streamflow-smoke-") as folder:
        smoke(wheel, Path(folder))


if __name__ == "__main__":
    main()
