"""Layer-wise asynchronous push against a fake model, across two processes
(roles in peers_layerwise.py)."""
from conftest import free_port, run_roles


def test_each_layer_lands_before_the_next_is_released_and_a_stop_sends_nothing_after():
    kw = {"port": free_port(), "decoder_port": free_port()}
    run_roles([("peers_layerwise:prompt", kw), ("peers_layerwise:decoder", kw)])
