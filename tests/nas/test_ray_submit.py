"""`ray up` / `ray submit scripts/search.py` / `ray down` end to end with Ray's local node provider.

The "remote machine" is this one: the test starts its own sshd on 127.0.0.1 (its own config, host key and client
key, a HOME of its own) inside a new PID namespace, so that the `ray stop` the cluster launcher runs over SSH sees
only the cluster this test started, and killing the namespace's first process stops everything it ran. Ray's SSH
reaches the sshd's port through a ProxyCommand (tests/nas/ssh_relay.py); all traffic stays on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.exists(SSHD) and shutil.which("rsync") and shutil.which("unshare") and os.geteuid() == 0),
        reason="needs root, sshd, rsync and unshare (.ci/run installs openssh-server and rsync)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"sshd did not listen on 127.0.0.1:{port}")


def test_ray_up_submit_down_with_the_local_provider(tmp_path):
    venv_bin = os.path.dirname(sys.executable)
    home = tmp_path / "home"
    home.mkdir()
    for name in ("hostkey", "key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    shutil.copy(tmp_path / "key.pub", tmp_path / "authorized_keys")
    port, gcs = _free_port(), _free_port()
    (tmp_path / "sshd_config").write_text(textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {tmp_path}/hostkey
        PidFile {tmp_path}/sshd.pid
        AuthorizedKeysFile {tmp_path}/authorized_keys
        StrictModes no
        UsePAM no
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PrintMotd no
        SetEnv HOME={home}
        Subsystem sftp internal-sftp
        """))
    # Ray's commands run in login shells that source ~/.bashrc: put this project's venv first on the PATH there.
    rc = (f"export PATH={venv_bin}:$PATH\nexport RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0\n"
          f"export PYTHONPATH={ROOT}\n")
    (home / ".bashrc").write_text(rc)
    (home / ".bash_profile").write_text(rc)
    cluster = f"spinenas-test-{port}"
    (tmp_path / "cluster.yaml").write_text(textwrap.dedent(f"""\
        cluster_name: {cluster}
        provider:
          type: local
          head_ip: 127.0.0.1
          worker_ips: []
        auth:
          ssh_user: root
          ssh_private_key: {tmp_path}/key
          ssh_proxy_command: {sys.executable} {ROOT}/tests/nas/ssh_relay.py 127.0.0.1 {port}
        min_workers: 0
        max_workers: 0
        setup_commands: []
        head_start_ray_commands:
          - ray stop
          - ray start --head --port={gcs} --node-ip-address=127.0.0.1 --include-dashboard=false --num-cpus=2 --disable-usage-stats
        worker_start_ray_commands: []
        """))
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    sshd = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", SSHD, "-D", "-e", "-f",
                             str(tmp_path / "sshd_config")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    ray_cli = os.path.join(venv_bin, "ray")
    config = str(tmp_path / "cluster.yaml")
    db = tmp_path / "r.db"
    try:
        _wait_port(port)
        up = subprocess.run([ray_cli, "up", "-y", "--no-config-cache", config], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        submit = subprocess.run(
            [ray_cli, "submit", "--no-config-cache", config, "scripts/search.py", "--", "--evaluator", "surrogate",
             "--controller", "random", "--trials", "4", "--workers", "2", "--cpus-per-trial", "1", "--db", str(db),
             "--address", f"127.0.0.1:{gcs}", "--name", "submitted", "--run-dir", str(tmp_path / "runs")],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
        assert "search 'submitted' finished: 4 trials" in submit.stdout
        con = sqlite3.connect(db)
        statuses = [r[0] for r in con.execute("select status from trials")]
        con.close()
        assert statuses == ["completed"] * 4
        down = subprocess.run([ray_cli, "down", "-y", config], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=120)
        assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    finally:
        # The namespace's first process is sshd: killing it ends every process the test started there.
        import psutil

        for child in psutil.Process(sshd.pid).children():
            child.send_signal(signal.SIGKILL)
        sshd.wait(timeout=30)
        for suffix in (".state", ".lock"):
            path = f"/tmp/ray/cluster-{cluster}{suffix}"
            if os.path.exists(path):
                os.remove(path)
