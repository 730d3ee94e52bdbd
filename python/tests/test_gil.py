"""Two Python threads transferring at once overlap in time: the GIL is
released inside transfers (see peers.gil_decode for how this is observed
without timing thresholds)."""
from conftest import run_roles


def test_two_threads_inside_transfers_at_once():
    run_roles([("gil_prefill", {}), ("gil_decode", {})])
