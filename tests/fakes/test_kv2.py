"""Both fake Vaults answer kv-v2 check-and-set alike, as the kv-v2 plugin does (`path_data.go`):
`cas` must equal the key's current version (0: never written; soft-deleted versions count), and
a write without `cas` is refused once the mount or the key requires it. Driven through hvac, the
client ksecrets uses, at the HTTP boundary."""

from __future__ import annotations

import hvac
import hvac.exceptions as hx
import pytest
import responses

from tests.fakes.kv2 import CAS_MISMATCH, CAS_REQUIRED
from tests.jobs.rotate.conftest import FakeKV
from tests.vault.fakevault import FakeVault


@pytest.fixture(params=["FakeVault", "FakeKV"])
def fake(request):
    """(hvac client, the fake's kv-v2 store of mount `secret`) for each fake."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if request.param == "FakeVault":
            vault = FakeVault(rsps)
            vault.enable_kv2("secret")
            yield hvac.Client(url=vault.addr, token=vault.token), vault.store("secret")
        else:
            kv = FakeKV()
            kv.register(rsps)
            yield hvac.Client(url=kv.addr, token=kv.token), kv.store


def write(client, data, cas=None):
    return client.secrets.kv.v2.create_or_update_secret(path="app", secret=data, cas=cas, mount_point="secret")


def refused(client, data, cas=None) -> str:
    with pytest.raises(hx.InvalidRequest) as err:
        write(client, data, cas)
    return str(err.value).split(",")[0]


def test_cas_zero_means_the_key_must_not_exist(fake):
    client, store = fake
    assert write(client, {"A": "1"}, cas=0)["data"]["version"] == 1
    assert refused(client, {"A": "2"}, cas=0) == CAS_MISMATCH
    assert store.latest("app") == {"A": "1"} and store.version("app") == 1


def test_cas_must_equal_the_current_version(fake):
    client, store = fake
    write(client, {"A": "1"})
    assert refused(client, {"A": "2"}, cas=2) == CAS_MISMATCH  # ahead
    assert write(client, {"A": "2"}, cas=1)["data"]["version"] == 2
    assert refused(client, {"A": "3"}, cas=1) == CAS_MISMATCH  # stale: someone wrote version 2
    assert store.latest("app") == {"A": "2"}


def test_a_deleted_version_still_counts(fake):
    client, store = fake
    write(client, {"A": "1"})
    store.delete_latest("app")
    assert refused(client, {"A": "2"}, cas=0) == CAS_MISMATCH
    assert write(client, {"A": "2"}, cas=1)["data"]["version"] == 2


@pytest.mark.parametrize("where", ["mount", "key"])
def test_cas_required_refuses_a_write_without_cas(fake, where):
    client, store = fake
    write(client, {"A": "1"})
    if where == "mount":
        store.cas_required = True
    else:
        store.key_cas_required.add("app")
    assert refused(client, {"A": "2"}) == CAS_REQUIRED
    assert write(client, {"A": "2"}, cas=1)["data"]["version"] == 2
