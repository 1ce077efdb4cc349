"""batchfs over HTTPS: the double behind nghttpx with certificates made here.

A certificate that cannot be trusted fails the mount with exit status 1 and
a line naming why; a trusted one (named by -o ca_file or SSL_CERT_FILE)
mounts and serves the same bytes as the double. With HTTP/2 offered the
mount speaks it, with HTTP/1.1 alone it keeps to its keep-alive pool; in
both the connections it opens stay within max_connections, as
.batchfs/stats shows.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import apidouble  # noqa: E402

BIG = 5000
DATA = apidouble.make_dataset(big_job=BIG)
BIG_JOB = [j for j in DATA.jobs if j["id"].startswith("bjb-big-")][0]
SMALL_JOB = max((j for j in DATA.jobs if j is not BIG_JOB), key=lambda j: len(DATA.items[j["id"]]))
MAX_CONNECTIONS = 4

# The trust a test means must be the only one: no bundle from outside.
os.environ.pop("SSL_CERT_FILE", None)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.double = harness.Double("--big-job", str(BIG))
        try:
            cls.certs = harness.Certificates()
        except BaseException:
            cls.double.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.certs.remove()
        finally:
            cls.double.stop()

    def proxy(self, kind="good", http2=True):
        proxy = harness.TlsProxy(self.double, self.certs, kind, http2)
        self.addCleanup(proxy.stop)
        return proxy

    def mounted(self, proxy, *options, env=None):
        mount = harness.Mount(proxy, "max_connections=%d" % MAX_CONNECTIONS, *options,
                              env=env)

        def stop():
            harness.check_driver_output(mount.stop(), mount.status)
        self.addCleanup(stop)
        return mount

    def mount_fails(self, proxy, reason, *options, env=None):
        """The mount ends with status 1 and its last line, returned, names
        `reason`."""
        mount = harness.Mount(proxy, *options, env=env, wait=False)
        try:
            status = mount.wait_exit(60)
            err = mount.stderr()
        finally:
            mount.stop()
        self.assertEqual(status, 1, err)
        self.assertFalse(harness.is_mounted(mount.path))
        last = err.strip().splitlines()[-1]
        self.assertTrue(last.startswith("batchfs: %s: TLS: %s" % (proxy.url, reason)), err)
        self.assertNotIn("Input/output error", err)
        for mark in harness.SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        return last

    def stats(self, mount):
        with open(os.path.join(mount.path, ".batchfs", "stats")) as f:
            return json.load(f)

    def assert_same_bytes(self, mount):
        """A few item files and the big folder's names, as the double has them."""
        items = DATA.items[SMALL_JOB["id"]]
        done = [i for i in items if i["status"] == "completed"]
        folder = os.path.join(mount.path, "jobs", SMALL_JOB["id"], "completed")
        seen = {}
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as f:
                text = f.read().decode()
            seen[json.loads(text)["item_id"]] = text
        self.assertEqual(sorted(seen), sorted(i["item_id"] for i in done))
        for item in done[:20]:
            self.assertEqual(seen[item["item_id"]], apidouble.render(item))
        big = [i for i in DATA.items[BIG_JOB["id"]] if i["status"] == "completed"]
        names = os.listdir(os.path.join(mount.path, "jobs", BIG_JOB["id"], "completed"))
        self.assertEqual(len(names), len(big))

    # ---- certificates that must fail the mount -------------------------------

    def test_untrusted_certificates_fail(self):
        """Each certificate the CA in ca_file does not vouch for, for this host
        and now, fails the mount with its own reason."""
        for kind, reason in (("self_signed", "self-signed certificate"),
                             ("other_host", "certificate is for another host name"),
                             ("expired", "certificate has expired"),
                             ("unknown_ca", "unknown certificate authority")):
            with self.subTest(kind=kind):
                proxy = self.proxy(kind)
                self.mount_fails(proxy, reason, "ca_file=" + proxy.ca)

    def test_system_trust_alone_does_not_know_the_test_ca(self):
        self.mount_fails(self.proxy(), "unknown certificate authority")

    def test_ssl_cert_file_of_another_ca_fails(self):
        proxy = self.proxy()
        self.mount_fails(proxy, "unknown certificate authority",
                         env={"SSL_CERT_FILE": os.path.join(self.certs.dir, "other_ca.crt")})

    def test_unreadable_ca_file_is_named(self):
        proxy = self.proxy()
        for options, env in ((["ca_file=/nonexistent/ca.pem"], None),
                             ([], {"SSL_CERT_FILE": "/nonexistent/ca.pem"})):
            with self.subTest(env=env):
                last = self.mount_fails(proxy, "cannot use the CA bundle", *options, env=env)
                self.assertIn("/nonexistent/ca.pem", last)

    # ---- trusted certificates ----------------------------------------------------

    def assert_mounts_speaking(self, server, version, *options, env=None):
        """Mounts, serves the double's bytes, speaks `version`, and opens
        no more connections than it may use at once."""
        mount = self.mounted(server, *options, env=env)
        self.assert_same_bytes(mount)
        connections = self.stats(mount)["connections"]
        self.assertEqual(connections["http_version"], version)
        self.assertGreaterEqual(connections["opened"], 1)
        self.assertLessEqual(connections["opened"], MAX_CONNECTIONS)

    def test_ca_file_mounts_over_http2(self):
        proxy = self.proxy(http2=True)
        self.assert_mounts_speaking(proxy, "2", "ca_file=" + proxy.ca)

    def test_http1_only_keeps_its_pool(self):
        proxy = self.proxy(http2=False)
        self.assert_mounts_speaking(proxy, "1.1", "ca_file=" + proxy.ca)

    def test_ssl_cert_file_is_trusted(self):
        proxy = self.proxy()
        self.assert_mounts_speaking(proxy, "2", env={"SSL_CERT_FILE": proxy.ca})

    def test_plain_http_reports_http1(self):
        self.assert_mounts_speaking(self.double, "1.1")


class TlsBigListingTest(unittest.TestCase):
    """Listing a folder of 100,000 items: with HTTP/2 offered, the pages share
    one multiplexed connection (two at most, should the first one be lost),
    not one connection per request in flight; with HTTP/1.1 alone, the
    keep-alive pool stays within max_connections."""

    ITEMS = 100000
    CONNECTIONS = 8

    @classmethod
    def setUpClass(cls):
        cls.double = harness.Double("--big-job", str(cls.ITEMS))
        try:
            cls.certs = harness.Certificates()
        except BaseException:
            cls.double.stop()
            raise
        data = apidouble.make_dataset(big_job=cls.ITEMS)
        big = [j for j in data.jobs if j["id"].startswith("bjb-big-")][0]
        cls.big_id = big["id"]
        cls.completed = sum(1 for i in data.items[big["id"]] if i["status"] == "completed")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.certs.remove()
        finally:
            cls.double.stop()

    def list_big_folder(self, http2):
        proxy = harness.TlsProxy(self.double, self.certs, "good", http2)
        self.addCleanup(proxy.stop)
        mount = harness.Mount(proxy, "max_connections=%d" % self.CONNECTIONS,
                              "ca_file=" + proxy.ca)
        self.addCleanup(lambda: harness.check_driver_output(mount.stop(), mount.status))
        names = os.listdir(os.path.join(mount.path, "jobs", self.big_id, "completed"))
        self.assertEqual(len(names), self.completed)
        with open(os.path.join(mount.path, ".batchfs", "stats")) as f:
            return json.load(f)["connections"]

    def test_http2_multiplexes_on_one_or_two_connections(self):
        connections = self.list_big_folder(http2=True)
        self.assertEqual(connections["http_version"], "2")
        self.assertGreaterEqual(connections["opened"], 1)
        self.assertLessEqual(connections["opened"], 2)

    def test_http1_stays_within_max_connections(self):
        connections = self.list_big_folder(http2=False)
        self.assertEqual(connections["http_version"], "1.1")
        self.assertGreaterEqual(connections["opened"], 1)
        self.assertLessEqual(connections["opened"], self.CONNECTIONS)


if __name__ == "__main__":
    unittest.main(verbosity=2)
