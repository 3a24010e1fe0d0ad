from tests.manifests.monitoring.conftest import promtool  # noqa: F401 - the real promtool fixture
