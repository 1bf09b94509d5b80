"""A real OpenLDAP directory for the sign-in tests: Debian's slapd on 127.0.0.1, two people in two groups.

The directory is made in a temporary folder: a ``slapd.conf`` with the mdb backend and the core,
cosine, inetorgperson schemas, loaded offline with ``slapadd``, then ``slapd -d 0`` in the foreground
on a free port, stopped by ``stop()``. Passwords are stored as ``slappasswd`` hashes; only the person
themself may read anything but the password, which anyone may only bind with.

    dc=example,dc=jp
    ├── ou=people   uid=tanaka (田中 太郎), uid=sato (佐藤 花子)
    ├── ou=groups   cn=jinji (member tanaka), cn=gijutsu (member sato)
    └── cn=reader   the service account a search signs in with
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.servers import free_port, wait_listening

BASE = "dc=example,dc=jp"
USER_DN = f"uid={{user}},ou=people,{BASE}"
GROUP_BASE = f"ou=groups,{BASE}"
SCHEMAS = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")


@dataclass(frozen=True)
class Person:
    """Someone the test directory knows: their uid, password, names and groups."""

    uid: str
    password: str
    cn: str
    sn: str
    groups: tuple[str, ...]


PEOPLE = (
    Person("tanaka", "たなかのパスワード1", "田中 太郎", "田中", ("jinji",)),
    Person("sato", "sato-pass-2", "佐藤 花子", "佐藤", ("gijutsu",)),
)


# the service account an Active Directory set-up searches with (RAG_LDAP_BIND_DN): it may read, not write
SERVICE_DN = f"cn=reader,{BASE}"
SERVICE_PASSWORD = "reader-pass-3"


def available() -> bool:
    """Whether slapd and its tools are installed (Debian's ``slapd``)."""
    return all(shutil.which(tool) or Path("/usr/sbin", tool).exists() for tool in ("slapd", "slapadd", "slappasswd"))


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _value(name: str, value: str) -> str:
    """An LDIF line; a value that is not plain ASCII goes base64-encoded (``name:: …``), as LDIF requires."""
    if value.isascii():
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def _hash(password: str) -> str:
    done = subprocess.run([_tool("slappasswd"), "-s", password], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def directory_ldif(people: tuple[Person, ...] = PEOPLE) -> str:
    """The directory's entries: the base, the two branches, each person, each group with its members."""
    entries = [
        [f"dn: {BASE}", "objectClass: dcObject", "objectClass: organization", "dc: example", "o: example"],
        [f"dn: ou=people,{BASE}", "objectClass: organizationalUnit", "ou: people"],
        [f"dn: {GROUP_BASE}", "objectClass: organizationalUnit", "ou: groups"],
        [
            f"dn: {SERVICE_DN}",
            "objectClass: organizationalRole",
            "objectClass: simpleSecurityObject",
            "cn: reader",
            _value("userPassword", _hash(SERVICE_PASSWORD)),
        ],
    ]
    for person in people:
        entries.append(
            [
                f"dn: {USER_DN.format(user=person.uid)}",
                "objectClass: inetOrgPerson",
                f"uid: {person.uid}",
                _value("cn", person.cn),
                _value("sn", person.sn),
                _value("userPassword", _hash(person.password)),
            ]
        )
    for group in sorted({g for person in people for g in person.groups}):
        members = [USER_DN.format(user=p.uid) for p in people if group in p.groups]
        entries.append(
            [f"dn: cn={group},{GROUP_BASE}", "objectClass: groupOfNames", f"cn: {group}"]
            + [f"member: {member}" for member in members]
        )
    return "\n\n".join("\n".join(lines) for lines in entries) + "\n"


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A certificate authority and a certificate for 127.0.0.1 signed by it: (CA, certificate, key)."""
    ca_key, ca, key, request, certificate = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    openssl = ["openssl"]
    run = lambda *args: subprocess.run([*openssl, *args], capture_output=True, check=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=テスト認証局",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request), "-subj", "/CN=127.0.0.1")
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
    run(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(certificate),
        "-days",
        "2",
        "-extfile",
        str(extensions),
    )
    return ca, certificate, key


def slapd_conf(folder: Path, tls: tuple[Path, Path, Path] | None = None) -> str:
    """A minimal slapd.conf: the schemas, the mdb module, one database, and who may read what (and TLS)."""
    schemas = "\n".join(f"include {SCHEMAS / f'{name}.schema'}" for name in ("core", "cosine", "inetorgperson"))
    certificates = (
        f"TLSCACertificateFile {tls[0]}\nTLSCertificateFile {tls[1]}\nTLSCertificateKeyFile {tls[2]}\n" if tls else ""
    )
    return f"""{schemas}
{certificates}pidfile {folder / "slapd.pid"}
modulepath {MODULES}
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
directory {folder / "db"}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""


class Slapd:
    """slapd serving the test directory on ``ldap://127.0.0.1:PORT``, stopped by ``stop()``."""

    def __init__(self, port: int | None = None, tls: bool = False) -> None:
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.folder = Path(tempfile.mkdtemp(prefix="slapd-"))
        # with TLS: a certificate for 127.0.0.1 from a CA of its own (``ca``), for ldaps:// and StartTLS
        self.ca: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def start(self, seconds: float = 20) -> Slapd:
        conf = self.folder / "slapd.conf"
        tls = make_certificates(self.folder) if self.tls_port else None
        self.ca = tls[0] if tls else None
        conf.write_text(slapd_conf(self.folder, tls), encoding="utf-8")
        (self.folder / "db").mkdir()
        ldif = self.folder / "directory.ldif"
        ldif.write_text(directory_ldif(), encoding="utf-8")
        subprocess.run([_tool("slapadd"), "-f", str(conf), "-l", str(ldif)], capture_output=True, check=True)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        # -d 0: in the foreground (no fork to lose track of), logging nothing
        urls = f"{self.url}/" + (f" {self.ldaps_url}/" if self.tls_port else "")
        command = [_tool("slapd"), "-f", str(conf), "-h", urls, "-d", "0"]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_listening(self.process, self.port, self.log, "slapd", seconds)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.folder, ignore_errors=True)
