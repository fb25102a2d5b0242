"""Debian's Mosquitto as a local process: a plain listener and a TLS listener with a password file.

On first start the runtime directory gets a self-signed CA, a server certificate for
``localhost``/``127.0.0.1`` signed by it (made with the ``openssl`` command) and a password file
(made with ``mosquitto_passwd``). Mosquitto started as root drops to the user ``mosquitto``, which
then cannot read files owned by root with mode 0600 nor traverse ``/root``; we set ``user`` to the
user we run as, so the broker keeps the identity that owns its files.
"""

from __future__ import annotations

import getpass
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from meterline.errors import ConfigError, InfrastructureError
from meterline.local import pidfile, processes
from meterline.local.child import ChildService
from meterline.local.ports import ensure_port_free, wait_for_port


@dataclass(frozen=True)
class MqttEndpoint:
    """Where a Mosquitto listens and how to log in."""

    host: str
    port: int
    tls_port: int
    username: str
    password: str
    ca_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the broker against our CA (TLS 1.2+)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise ConfigError(f"{name} is not installed (apt-get install {package}), or set MQTT_URL to a running broker")
    return path


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise InfrastructureError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-1000:]}")


def make_certificates(directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> None:
    """Create ``ca.crt``/``ca.key`` and ``server.crt``/``server.key`` in ``directory`` unless present."""
    if (directory / "server.crt").exists() and (directory / "ca.crt").exists():
        return
    openssl = _tool("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    _run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-sha256",
          "-subj", "/CN=Meterline local CA", "-keyout", str(ca_key), "-out", str(ca_crt),
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
         "creating the local CA")
    _run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
          "-keyout", str(key), "-out", str(csr)], "creating the server key")
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
          "-CAcreateserial", "-days", "825", "-sha256", "-extfile", str(ext), "-out", str(crt)],
         "signing the server certificate")
    for path in (ca_key, key):
        path.chmod(0o600)


@dataclass
class LocalMosquitto(ChildService):
    """A Mosquitto process with runtime files in ``data_dir``; ``start()`` waits for both listeners."""

    data_dir: Path
    port: int = 1883
    tls_port: int = 8883
    host: str = "127.0.0.1"
    username: str = "meterline"
    password: str = "meterline-local"  # noqa: S105 - loopback-only broker of the local stack
    extra_users: dict[str, str] = field(default_factory=dict)
    stop_timeout = 10.0  # not a field: a class attribute of ChildService

    @property
    def endpoint(self) -> MqttEndpoint:
        return MqttEndpoint(self.host, self.port, self.tls_port, self.username, self.password,
                            self.data_dir / "certs" / "ca.crt")

    def _write_config(self) -> Path:
        certs = self.data_dir / "certs"
        make_certificates(certs)
        passwd = self.data_dir / "passwd"
        users = {self.username: self.password, **self.extra_users}
        passwd.write_text("")
        passwd.chmod(0o600)
        tool = _tool("mosquitto_passwd", "mosquitto")
        for user, password in users.items():
            _run([tool, "-b", str(passwd), user, password], "writing the Mosquitto password file")
        persistence = self.data_dir / "persistence"
        persistence.mkdir(exist_ok=True)
        config = self.data_dir / "mosquitto.conf"
        config.write_text(
            f"user {getpass.getuser()}\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            "persistence true\n"
            f"persistence_location {persistence}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
            f"log_dest file {self.data_dir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"listener {self.port} {self.host}\n"
            f"listener {self.tls_port} {self.host}\n"
            f"cafile {certs / 'ca.crt'}\n"
            f"certfile {certs / 'server.crt'}\n"
            f"keyfile {certs / 'server.key'}\n"
            "tls_version tlsv1.2\n"
        )
        return config

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "mosquitto.pid"

    def start(self, timeout: float = 15.0) -> Self:
        if self.running:
            return self
        binary = _tool("mosquitto", "mosquitto")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pidfile.stop_leftover(self._pid_file, str(self.data_dir / "mosquitto.conf"), "Mosquitto")
        ensure_port_free(self.host, self.port, "Mosquitto")
        ensure_port_free(self.host, self.tls_port, "Mosquitto (TLS)")
        config = self._write_config()
        proc = self._proc = processes.spawn([binary, "-c", str(config)], self.data_dir / "stdout.log")
        pidfile.write(self._pid_file, proc.pid)
        try:
            deadline = time.monotonic() + timeout
            for port in (self.port, self.tls_port):
                if proc.poll() is not None:
                    break
                wait_for_port(self.host, port, max(0.5, deadline - time.monotonic()), "Mosquitto")
            if proc.poll() is not None:
                log = (self.data_dir / "mosquitto.log")
                detail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
                raise InfrastructureError(f"Mosquitto exited with code {proc.returncode}: {detail}")
        except BaseException:
            self.kill()
            raise
        return self
