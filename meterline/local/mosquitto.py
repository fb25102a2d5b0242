"""Debian's Mosquitto as a local process, with the access rules of production.

Two listeners on loopback: the plain ``port`` for Meterline's services (the bridge and the admin pick
their own client ids) and the TLS ``tls_port`` for tenants, where the client id is the login name
(``use_username_as_clientid``). Logins and access rules are the dynamic-security plugin's
(``meterline.mqtt_admin``): the first start writes its file with the admin login only, and every start
applies the roles and the bridge login over ``$CONTROL``, as the compose stack's init does. Passwords
of the admin and the bridge are generated once into 0600 files of ``data_dir`` (0700); tenant logins
made here keep theirs in ``data_dir/logins/``.

On first start the runtime directory also gets a self-signed CA and a server certificate for
``localhost``/``127.0.0.1`` signed by it (made with the ``openssl`` command). Mosquitto started as root
drops to the user ``mosquitto``, which then cannot read files owned by root with mode 0600 nor
traverse ``/root``; we set ``user`` to the user we run as, so the broker keeps the identity that owns
its files. Its persistence (reports queued for an offline bridge hold raw API keys: the published
protocol puts them there) is a 0600 file in a 0700 directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import glob
import json
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from meterline import mqtt_admin
from meterline.errors import ConfigError, InfrastructureError
from meterline.local import pidfile, processes
from meterline.local.child import ChildService
from meterline.local.ports import ensure_port_free, wait_for_port
from meterline.local.secret_file import ensure_secret, read_secret, write_secret

#: where Debian (any architecture) and the eclipse-mosquitto image put the plugin
DYNSEC_PLUGIN_PATHS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                       "/usr/local/lib/mosquitto_dynamic_security.so")


@dataclass(frozen=True)
class MqttLogin:
    """A tenant login; ``password_file`` is where the local stack keeps the password (0600)."""

    username: str
    password: str
    password_file: Path | None = None


@dataclass(frozen=True)
class MqttEndpoint:
    """Where a Mosquitto listens: ``port`` for services, ``tls_port`` for tenants; the bridge's login."""

    host: str
    port: int
    tls_port: int
    username: str
    password: str
    ca_file: Path
    admin_password: str = ""

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


def dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic-security plugin (shipped with Debian's ``mosquitto`` package)."""
    for pattern in DYNSEC_PLUGIN_PATHS:
        if found := sorted(glob.glob(pattern)):
            return found[0]
    raise ConfigError("Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is missing: "
                      "install Mosquitto 2.0 or later (apt-get install mosquitto)")


def _run_async(coro: Any) -> Any:
    """Run ``coro`` to completion from sync code, also when the caller's thread runs an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mosquitto-admin") as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class LocalMosquitto(ChildService):
    """A Mosquitto process with runtime files in ``data_dir``; ``start()`` waits for both listeners.

    ``extra_users``: tenant logins (name -> password) made at every start, e.g. from
    ``METERLINE_MQTT_USERS``; each one's agent is its name.
    """

    data_dir: Path
    port: int = 1883
    tls_port: int = 8883
    host: str = "127.0.0.1"
    extra_users: dict[str, str] = field(default_factory=dict)
    stop_timeout = 10.0  # not a field: a class attribute of ChildService

    @property
    def _admin_file(self) -> Path:
        return self.data_dir / "admin.password"

    @property
    def _bridge_file(self) -> Path:
        return self.data_dir / "bridge.password"

    @property
    def endpoint(self) -> MqttEndpoint:
        """Where this broker listens (the passwords are made on first use)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        admin, _ = ensure_secret(self._admin_file, mqtt_admin.new_password)
        bridge, _ = ensure_secret(self._bridge_file, mqtt_admin.new_password)
        return MqttEndpoint(self.host, self.port, self.tls_port, mqtt_admin.BRIDGE_USER, bridge,
                            self.data_dir / "certs" / "ca.crt", admin)

    def _write_config(self) -> Path:
        self.data_dir.chmod(0o700)
        certs = self.data_dir / "certs"
        make_certificates(certs)
        endpoint = self.endpoint
        dynsec = self.data_dir / "dynamic-security.json"
        if not dynsec.exists():  # later starts keep the plugin's file: it holds the tenant logins
            write_secret(dynsec, json.dumps(mqtt_admin.initial_config(endpoint.admin_password), indent=1))
        persistence = self.data_dir / "persistence"
        persistence.mkdir(mode=0o700, exist_ok=True)
        persistence.chmod(0o700)
        config = self.data_dir / "mosquitto.conf"
        config.write_text(
            f"user {getpass.getuser()}\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"plugin {dynsec_plugin()}\n"
            f"plugin_opt_config_file {dynsec}\n"
            "persistence true\n"
            f"persistence_location {persistence}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            # QoS 1 messages in flight per client without an MQTT 5 receive maximum of its own (the bridge
            # announces one), and the receive maximum the broker announces to publishers
            "max_inflight_messages 1000\n"
            f"log_dest file {self.data_dir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "# services (bridge, admin): client ids of their own\n"
            f"listener {self.port} {self.host}\n"
            "# tenants: the client id is the login, so no tenant can take over another's session\n"
            f"listener {self.tls_port} {self.host}\n"
            "use_username_as_clientid true\n"
            f"cafile {certs / 'ca.crt'}\n"
            f"certfile {certs / 'server.crt'}\n"
            f"keyfile {certs / 'server.key'}\n"
            "tls_version tlsv1.2\n"
        )
        return config

    async def _admin_session(self, work: Any) -> Any:
        ep = self.endpoint
        async with mqtt_admin.connect_admin(ep.host, ep.port, ep.admin_password) as admin:
            return await work(admin)

    def _apply_access(self) -> None:
        """The roles, the bridge login and ``extra_users`` on the running broker (idempotent)."""
        bridge = self.endpoint.password

        async def work(admin: mqtt_admin.DynsecAdmin) -> None:
            await mqtt_admin.apply_base(admin, bridge)
            for login, password in self.extra_users.items():
                await mqtt_admin.create_login(admin, login, password, agent_id=login)

        _run_async(self._admin_session(work))

    def tenant_login(self, login: str, agent_id: str, *, legacy: bool = False) -> MqttLogin:
        """The tenant login ``login`` of the running broker, made (or its password reset) when this
        directory has no password for it; the password is kept in ``data_dir/logins/<login>.password``."""
        mqtt_admin.check_login_name(login)
        path = self.data_dir / "logins" / f"{login}.password"
        password = read_secret(path) or mqtt_admin.new_password()

        async def work(admin: mqtt_admin.DynsecAdmin) -> None:
            await mqtt_admin.create_login(admin, login, password, agent_id=agent_id, legacy=legacy)

        _run_async(self._admin_session(work))
        path.parent.mkdir(mode=0o700, exist_ok=True)
        write_secret(path, password)
        return MqttLogin(login, password, path)

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
            self._apply_access()
        except BaseException:
            self.kill()
            raise
        return self
