"""GraphedTrainStep: a clear error without CUDA; on a GPU, replayed steps equal eager steps, also across
pruning (invalidate) and learning-rate changes (automatic re-capture)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import goldnas_fast.ops
from goldnas_fast.nb201 import SearchNetwork
from goldnas_fast.nn.graphed import GraphedTrainStep

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")


def _fused_cuda() -> bool:
    if not CUDA or not callable(getattr(goldnas_fast.ops, "node_sum", None)):
        return False
    from goldnas_fast._library import cuda_version

    return cuda_version() > 0


BACKENDS = ["reference", pytest.param("fused", marks=pytest.mark.skipif(not _fused_cuda(),
                                                                       reason="no CUDA node_sum kernels"))]


def test_clear_error_without_cuda_or_on_cpu_parameters():
    net = SearchNetwork(C=4, N=1, backend="reference")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    match = "parameter on cpu" if CUDA else "CUDA device"
    with pytest.raises(RuntimeError, match=match):
        GraphedTrainStep(lambda x, y: F.cross_entropy(net(x), y), [opt])


class Trainer:
    """The same step eagerly (``graphed=False``) or through GraphedTrainStep."""

    def __init__(self, net: SearchNetwork, graphed: bool) -> None:
        self.net = net
        self.opt_w = torch.optim.SGD(net.weight_parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
        self.opt_a = torch.optim.SGD(net.arch_parameters(), lr=0.1, momentum=0.9)
        self.graphed = GraphedTrainStep(self.loss, [self.opt_a, self.opt_w], before_step=self.clip) if graphed else None

    def loss(self, x, y):
        logits = self.net(x)
        return F.cross_entropy(logits, y), logits

    def clip(self):
        torch.nn.utils.clip_grad_norm_([p for p in self.net.weight_parameters() if p.requires_grad], 5.0)

    def step(self, x, y):
        if self.graphed is not None:
            return self.graphed(x, y)
        self.opt_w.zero_grad(set_to_none=True)
        self.opt_a.zero_grad(set_to_none=True)
        out = self.loss(x, y)
        out[0].backward()
        self.clip()
        self.opt_a.step()
        self.opt_w.step()
        return tuple(t.detach() for t in out)


def _assert_same_state(a: SearchNetwork, b: SearchNetwork) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_graphed_steps_equal_eager_steps_across_pruning_and_lr_changes(backend):
    torch.manual_seed(0)
    net = SearchNetwork(C=4, N=1, backend=backend, input_size=8).cuda()
    eager, graphed = Trainer(net, graphed=False), Trainer(copy.deepcopy(net), graphed=True)
    g = torch.Generator(device="cuda").manual_seed(1)

    def batches(n):
        for _ in range(n):
            yield torch.randn(8, 3, 8, 8, device="cuda", generator=g), torch.randint(0, 10, (8,), device="cuda",
                                                                                     generator=g)

    for x, y in batches(6):  # 3 warm-up steps, one capture, replays
        loss_e, logits_e = eager.step(x, y)
        loss_g, logits_g = graphed.step(x, y)
        torch.testing.assert_close(loss_g, loss_e, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits_g, logits_e, rtol=1e-4, atol=1e-5)
    assert graphed.graphed.captured and graphed.graphed.captures == 1
    _assert_same_state(eager.net, graphed.net)

    mask = [True] * 24
    mask[0:3] = [False] * 3  # edge 1<-0 keeps only avg_pool_3x3
    mask[9] = False  # 2<-1 nor_conv_1x1
    for t in (eager, graphed):
        t.net.set_alive(mask)
    graphed.graphed.invalidate()
    frozen = {n: p.detach().clone() for n, p in graphed.net.named_parameters() if not p.requires_grad}
    assert frozen
    for x, y in batches(5):
        eager.step(x, y)
        graphed.step(x, y)
    assert graphed.graphed.captures == 2
    _assert_same_state(eager.net, graphed.net)
    for n, p in graphed.net.named_parameters():  # no stale gradient moved a pruned op
        if n in frozen:
            assert torch.equal(p, frozen[n]), n

    for t in (eager, graphed):
        t.opt_w.param_groups[0]["lr"] = 0.01
    for x, y in batches(2):
        eager.step(x, y)
        graphed.step(x, y)
    _assert_same_state(eager.net, graphed.net)
    assert graphed.graphed.captures == 2  # still warming up after the automatic invalidation
    for x, y in batches(3):
        eager.step(x, y)
        graphed.step(x, y)
    assert graphed.graphed.captures == 3
    _assert_same_state(eager.net, graphed.net)


@needs_cuda
def test_bad_arguments_on_cuda():
    net = SearchNetwork(C=4, N=1, backend="reference", input_size=8).cuda()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = lambda x, y: F.cross_entropy(net(x), y)  # noqa: E731
    with pytest.raises(ValueError, match="capturable"):
        GraphedTrainStep(loss, [torch.optim.Adam(net.parameters(), capturable=False)])
    with pytest.raises(ValueError, match="warmup"):
        GraphedTrainStep(loss, [sgd], warmup=0)
    with pytest.raises(ValueError, match="optimizers"):
        GraphedTrainStep(loss, [])
    step = GraphedTrainStep(loss, [sgd], warmup=1)
    x, y = torch.randn(4, 3, 8, 8, device="cuda"), torch.randint(0, 10, (4,), device="cuda")
    step(x, y)
    with pytest.raises(ValueError, match="images"):
        step(x[:3], y[:3])
