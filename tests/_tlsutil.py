"""Certificates for the TLS tests, generated at test time (nothing committed).

A throwaway CA and a server certificate it signs, for ``localhost`` and
``127.0.0.1``, made with the ``openssl`` command line tool into a temporary
directory once per test session.  Tests needing them are skipped when the
tool is missing.
"""

import shutil
import ssl
import subprocess

import pytest

HOSTNAME = 'localhost'


class Certs:
    def __init__(self, directory):
        self.dir = directory
        self.ca = str(directory / 'ca.pem')
        self.cert = str(directory / 'server.pem')
        self.key = str(directory / 'server.key')

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self):
        """Verifies the server against the test CA (and its hostname)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx

    def untrusting_client_context(self):
        """Verifies against an empty trust store: the server is untrusted."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return ctx


def _openssl(*args, cwd):
    subprocess.run(['openssl', *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(directory):
    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
          '-nodes']
    _openssl('req', '-x509', *ec, '-keyout', 'ca.key', '-out', 'ca.pem',
             '-days', '2', '-subj', '/CN=ferroloop test CA',
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
             cwd=directory)
    _openssl('req', *ec, '-keyout', 'server.key', '-out', 'server.csr',
             '-subj', f'/CN={HOSTNAME}', cwd=directory)
    (directory / 'server.ext').write_text(
        f'subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1\n'
        'basicConstraints=critical,CA:FALSE\n'
        'keyUsage=critical,digitalSignature\n'
        'extendedKeyUsage=serverAuth\n')
    _openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem',
             '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem',
             '-days', '2', '-extfile', 'server.ext', cwd=directory)
    return Certs(directory)


@pytest.fixture(scope='session')
def certs(tmp_path_factory):
    if shutil.which('openssl') is None:
        pytest.skip('the openssl command line tool is needed to make '
                    'test certificates')
    return make_certs(tmp_path_factory.mktemp('tls-certs'))
