"""Both search networks keep the one supernet contract (goldnas_fast.nn.supernet) the same way."""
from __future__ import annotations

import pytest
import torch

import goldnas_fast.ops  # noqa: F401  (registers the fused ops)
from goldnas_fast.nn.gate_layout import GateLayout
from goldnas_fast.nn.supernet import Supernet
from goldnas_fast.search.controller import GoldNasConfig, GoldNasController
from goldnas_fast.spaces.goldnas import GoldNasSearchNetwork
from goldnas_fast.spaces.nb201 import SearchNetwork

NETWORKS = {
    "nb201": lambda **kw: SearchNetwork(C=4, N=1, **kw),
    "goldnas": lambda **kw: GoldNasSearchNetwork(C=4, layers=3, auxiliary=False, **kw),
}


def test_nb201_package_reexports_the_supernet() -> None:
    from goldnas_fast.nb201 import SearchNetwork as FromBenchmarkPackage

    assert FromBenchmarkPackage is SearchNetwork


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_contract(name: str) -> None:
    net = NETWORKS[name]()
    assert isinstance(net, Supernet)
    layout = net.gate_layout()
    assert isinstance(layout, GateLayout) and layout.num_pairs == net.num_pairs == net.alpha.numel()
    assert list(layout.flops_m) == pytest.approx(net.pair_flops_m())
    assert layout.fixed_flops_m == pytest.approx(net.fixed_flops_m())
    assert net.arch_parameters() == [net.alpha]
    assert all(p is not net.alpha for p in net.weight_parameters())
    assert len(net.weight_parameters()) + 1 == len(list(net.parameters()))
    assert net.gate_values().shape == (net.num_pairs,)
    GoldNasController(GoldNasConfig(), layout)  # the controller takes the typed layout as it is


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize(("field", "bad"), [("lean", 1), ("lean", "yes"), ("backend", "cuda"),
                                            ("memory_format", "nhwc")])
def test_modes_are_checked_alike(name: str, field: str, bad: object) -> None:
    """A bad backend, a non-bool lean or a bad memory format is refused in the constructor (where it is an
    argument) and by the setter, naming the network and the field, by both networks."""
    net = NETWORKS[name]()
    before = getattr(net, field)
    with pytest.raises(ValueError, match=f"{type(net).__name__}: {field} must be"):
        setattr(net, field, bad)
    assert getattr(net, field) == before
    if field != "memory_format":
        with pytest.raises(ValueError, match=f"{field} must be"):
            NETWORKS[name](**{field: bad})


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_modes_fan_out_to_every_cell(name: str) -> None:
    net = NETWORKS[name]()
    net.backend, net.lean, net.memory_format = "reference", True, "preserve"
    cells = net.search_cells()
    assert cells and all(c.backend == "reference" and c.lean is True and c.memory_format == "preserve" for c in cells)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_set_alive(name: str) -> None:
    net = NETWORKS[name]()
    alive = [True] * net.num_pairs
    alive[-1] = False
    net.set_alive(torch.tensor(alive))
    assert net.alive[-1] is False
    with pytest.raises(ValueError, match="one per pair"):
        net.set_alive(alive[:-1])


def test_controller_refuses_an_untyped_layout() -> None:
    with pytest.raises(ValueError, match="GateLayout"):
        GoldNasController(GoldNasConfig(), {"node": [0], "edge": [0], "flops_m": [1.0]})
