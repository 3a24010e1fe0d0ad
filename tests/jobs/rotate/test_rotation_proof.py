"""The proof of issue 12 against the real PostgreSQL server the tests start and the kv-v2 fake on
127.0.0.1 (the same proof against a real Vault: tests/e2e/test_rotation_real_vault.py).

Run with -s to see the figures quoted in README.md:
    .venv/bin/python -m pytest tests/jobs/rotate/test_rotation_proof.py -q -s
"""

from __future__ import annotations


from tests.jobs.rotate import proof

ROTATIONS = 100
# The guarantee holds for a consumer that re-reads its source within the minimum interval (in a
# cluster: refreshAfter plus the rollout, against minInterval). The client re-reads every 20 ms; the
# proof also waits for it to hold each new version before the next rotation, so a loaded machine
# (one login can take over 100 ms) cannot break the consumer's side of the contract by timing.
MIN_INTERVAL = 0.3  # seconds: the rotator's own minimum interval paces the rotations
REREAD = 0.02


def test_dual_zero_failed_logins_across_100_rotations(pg_server, served_kv):
    figures = proof.run_rotations(
        served_kv,
        pg_server,
        mode="dual",
        group="proof_app",
        rotations=ROTATIONS,
        min_interval=MIN_INTERVAL,
        reread=REREAD,
    )
    print("\n" + proof.Figures.HEADER + "\n" + figures.line())
    assert figures.rotations == ROTATIONS
    assert figures.logins > 5 * ROTATIONS  # the client really kept logging in throughout
    assert figures.max_lag <= 1, "a login used a pair two rotations old: the client did not keep to its side"
    assert figures.failed == 0
    assert figures.skipped > 0  # the minimum interval is what paced them


def test_single_mode_for_contrast_refuses_clients_between_commit_and_reread(pg_server, served_kv):
    """Today's single-role mode, same client: logins fail in the window between COMMIT and the
    client's next re-read. This is what dual mode removes."""
    figures = proof.run_rotations(
        served_kv,
        pg_server,
        mode="single",
        group="proof_single",
        rotations=30,
        min_interval=MIN_INTERVAL,
        reread=REREAD,
    )
    print("\n" + proof.Figures.HEADER + "\n" + figures.line())
    assert figures.rotations == 30
    assert figures.failed > 0


def test_dual_a_kill_at_each_step_leaves_working_pairs(pg_server, served_kv):
    results = proof.crash_each_step(served_kv, pg_server, mode="dual", group="crash_app")
    print("\n" + proof.crash_table("dual", results))
    assert list(results) == list(proof.STEPS_DUAL)
    for step, r in results.items():
        assert all(r.values()), (step, r)


def test_single_a_kill_between_vault_write_and_commit_is_its_one_broken_step(pg_server, served_kv):
    results = proof.crash_each_step(served_kv, pg_server, mode="single", group="crash_single")
    print("\n" + proof.crash_table("single", results))
    broken = {step for step, r in results.items() if not r["served pair logs in"]}
    assert broken == {"written"}  # Vault has the new password, the killed session's ALTER rolled back
    for r in results.values():
        assert r["previous pair logs in"] or not r["served pair logs in"]
        assert r["next rotation succeeds"] and r["its pair logs in"]
