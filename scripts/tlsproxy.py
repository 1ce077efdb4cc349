#!/usr/bin/env python3
"""tlsproxy - the API double behind a TLS terminator, for tests and the bench.

The real API is reached over HTTPS only; this puts nghttpx (Debian package
nghttp2-proxy) in front of the double so that certificate checks, ALPN and
HTTP/2 run as they do against it:

  Certificates  make a certificate authority and server certificates with
                the openssl command, in a directory the caller owns: one
                signed by the CA for 127.0.0.1 and localhost ("good"),
                one for another host name, one that has expired, one
                self-signed, and one signed by a second CA that nobody is
                told to trust.
  TlsProxy      nghttpx on a free port of 127.0.0.1 serving one of those
                certificates, offering HTTP/2 and HTTP/1.1 over ALPN, or
                HTTP/1.1 alone, and passing every request on to the double
                over plain HTTP/1.1 on loopback.

nghttpx is started with an empty configuration file (so the system's
/etc/nghttpx/nghttpx.conf, with its own ports, is never read), one frontend
on 127.0.0.1 only, the one backend on 127.0.0.1, and no OCSP stapling (whose
helper would fetch from the network). stop() ends it and removes its files.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

NGHTTPX = shutil.which("nghttpx") or "/usr/sbin/nghttpx"
HOST = "127.0.0.1"

# The certificates Certificates.make() writes, by name.
KINDS = ("good", "other_host", "expired", "self_signed", "unknown_ca")

CA_CONFIG = """\
[ca]
default_ca = test_ca
[test_ca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/issued
serial = {dir}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[anything]
commonName = supplied
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {names}
"""


def openssl(*args, cwd=None):
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], proc.stderr.strip()))


class Certificates:
    """A CA and server certificates in `directory` (made by make()).

    ca            the CA bundle that trusts "good", "other_host" and "expired"
    pair(kind)    (private key, certificate) of one server certificate
    """

    def __init__(self, directory):
        self.dir = directory
        self.ca = os.path.join(directory, "ca.crt")

    def pair(self, kind):
        return (os.path.join(self.dir, kind + ".key"), os.path.join(self.dir, kind + ".crt"))

    def make(self):
        self.make_ca("ca", "batchfs test CA")
        self.make_ca("other_ca", "batchfs untrusted CA")
        names = "IP:127.0.0.1,DNS:localhost"
        self.make_server("good", "ca", names)
        self.make_server("other_host", "ca", "DNS:api.example.invalid")
        # Valid once, long ago: only its dates are wrong.
        self.make_server("expired", "ca", names, "20200101000000Z", "20200201000000Z")
        self.make_server("unknown_ca", "other_ca", names)
        key, cert = self.pair("self_signed")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=" + names)
        return self

    def make_ca(self, name, common_name):
        ca_dir = os.path.join(self.dir, name)
        os.makedirs(os.path.join(ca_dir, "issued"))
        open(os.path.join(ca_dir, "index.txt"), "w").close()
        with open(os.path.join(ca_dir, "serial"), "w") as f:
            f.write("1000\n")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", os.path.join(ca_dir, "ca.key"),
                "-out", os.path.join(self.dir, name + ".crt"), "-days", "2",
                "-subj", "/CN=" + common_name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def make_server(self, kind, ca, names, start=None, end=None):
        ca_dir = os.path.join(self.dir, ca)
        config = os.path.join(ca_dir, kind + ".cnf")
        with open(config, "w") as f:
            f.write(CA_CONFIG.format(dir=ca_dir, names=names))
        key, cert = self.pair(kind)
        csr = os.path.join(ca_dir, kind + ".csr")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + kind)
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "2"]
        openssl("ca", "-batch", "-notext", "-config", config, "-extensions", "server",
                "-cert", os.path.join(self.dir, ca + ".crt"),
                "-keyfile", os.path.join(ca_dir, "ca.key"), "-in", csr, "-out", cert, *dates)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class TlsProxy:
    """nghttpx on a free port of 127.0.0.1 in front of `backend_port`.

    http2     offer h2 and http/1.1 over ALPN (False: http/1.1 only)
    cert      (private key, certificate) to serve
    url       https://127.0.0.1:<port>
    """

    def __init__(self, backend_port, cert, http2=True, workdir=None):
        self.dir = tempfile.mkdtemp(prefix="batchfs-tls-", dir=workdir)
        self.proc = None
        self.log = open(os.path.join(self.dir, "nghttpx.log"), "w+")
        config = os.path.join(self.dir, "empty.conf")
        open(config, "w").close()
        key, crt = cert
        # A port picked here may be taken before nghttpx binds it: try again.
        for _ in range(5):
            self.port = free_port()
            argv = [NGHTTPX, "--conf=" + config,
                    "--frontend=%s,%d" % (HOST, self.port),
                    "--backend=%s,%d;;proto=http/1.1" % (HOST, backend_port),
                    "--npn-list=" + ("h2,http/1.1" if http2 else "http/1.1"),
                    "--workers=1", "--no-ocsp", "--no-via", "--no-server-push",
                    "--backend-address-family=IPv4",
                    "--errorlog-file=/dev/stderr", "--accesslog-file=/dev/null",
                    "--pid-file=" + os.path.join(self.dir, "pid"),
                    key, crt]
            self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            if self.wait_listening():
                break
        else:
            self.stop()
            raise RuntimeError("nghttpx did not start")
        self.url = "https://%s:%d" % (HOST, self.port)

    def wait_listening(self, timeout=30):
        """True once nghttpx accepts connections; False if it exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                # Accepting, and by this process (not one that took the port).
                return self.proc.poll() is None
            except OSError:
                time.sleep(0.02)
        self.stop_process()
        raise RuntimeError("nghttpx did not listen on %d: %s" % (self.port, self.output()))

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop_process(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()

    def stop(self):
        try:
            self.stop_process()
        finally:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
