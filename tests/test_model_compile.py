"""torch.compile of the model: graph and break counts (torch._dynamo.explain), fullgraph inference
equal to eager, one dynamic-shape graph for every image size, training forward+backward."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from fasterrcnn.config import load_config
from fasterrcnn.model import FasterRCNN, build_model

# fmt: off
TINY = [
    "NET", "res18", "BACKBONE.WIDTH_MULT", "0.125", "RPN_CHANNELS", "16",
    "ANCHOR_SCALES", "[1, 2, 4]", "TRAIN.BATCH_SIZE", "16", "TRAIN.RPN_BATCHSIZE", "32",
    "TRAIN.RPN_PRE_NMS_TOP_N", "200", "TRAIN.RPN_POST_NMS_TOP_N", "40", "TRAIN.RPN_MIN_SIZE", "2",
    "TEST.RPN_PRE_NMS_TOP_N", "200", "TEST.RPN_POST_NMS_TOP_N", "30", "TEST.RPN_MIN_SIZE", "2",
]
# fmt: on


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch, single-threaded (tiny ops on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    torch.set_num_threads(threads)


def _model(overrides=()) -> FasterRCNN:
    torch.manual_seed(0)
    return build_model(load_config(None, TINY + list(overrides)), 3)


def _images(height: int = 64, width: int = 96, batch: int = 2):
    gen = torch.Generator().manual_seed(height * 1000 + width)
    im_data = torch.randn(batch, 3, height, width, generator=gen)
    im_info = torch.tensor([[height, width, 1.0], [height, width, 1.6]][:batch])
    return im_data, im_info


def _targets():
    gt = torch.zeros(2, 3, 5)
    gt[0, 0] = torch.tensor([8.0, 10.0, 40.0, 50.0, 1.0])
    gt[0, 1] = torch.tensor([50.0, 20.0, 90.0, 60.0, 2.0])
    gt[1, 0] = torch.tensor([20.0, 4.0, 60.0, 30.0, 2.0])
    return gt, torch.tensor([2, 1])


def _max_difference(a, b) -> float:
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize("overrides", [[], ["TEST.BBOX_VOTE_THRESH", "0.5"], ["TEST.FLIP", "true"]])
def test_inference_is_one_graph_without_breaks(overrides):
    model = _model(overrides).eval()
    with torch.no_grad():
        explained = torch._dynamo.explain(model.detect)(*_images())
    assert explained.break_reasons == []
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


def test_training_forward_is_one_graph_without_breaks():
    """The sampling seed is drawn eagerly before the graph (a torch.Generator cannot enter
    one); everything else, target layers included, is one graph."""
    model = _model().train()
    explained = torch._dynamo.explain(model)(*_images(), *_targets())
    assert explained.break_reasons == []
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


@pytest.mark.slow
def test_fullgraph_dynamic_inference_one_graph_for_every_size():
    """``dynamic=True``: one graph serves images of any size, equal to eager."""
    model = _model().eval()
    counter = CompileCounter()
    detect = torch.compile(model.detect, fullgraph=True, dynamic=True, backend=counter)
    with torch.no_grad():
        for height, width in [(64, 96), (96, 64), (80, 112)]:
            images = _images(height, width)
            compiled, eager = detect(*images), model.detect(*images)
            assert _max_difference(compiled, eager) == 0.0
            assert torch.equal(compiled.num_detections, eager.num_detections)
    assert counter.frame_count == 1


@pytest.mark.slow
def test_inductor_fullgraph_inference_and_training_match_eager():
    """Inductor: fullgraph inference within 1e-4 of eager on a batch of two images; the
    training step (forward + backward) gives the eager losses and gradients."""
    model = _model().eval()
    images = _images()
    with torch.no_grad():
        compiled = torch.compile(model.detect, fullgraph=True)(*images)
        eager = model.detect(*images)
        raw_compiled = torch.compile(model, fullgraph=True)(*images)
        raw_eager = model(*images)
    assert torch.equal(compiled.num_detections, eager.num_detections)
    assert (eager.num_detections > 0).all()
    assert _max_difference(compiled, eager) <= 1e-4
    assert _max_difference(raw_compiled, raw_eager) <= 1e-4

    model.train()
    step = torch.compile(model)
    results = []
    for run in (step, model):
        model.zero_grad()
        model.generator.manual_seed(model.cfg.RNG_SEED)
        losses = run(*images, *_targets())
        sum(losses.values()).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((losses, grads))
    (compiled_losses, compiled_grads), (eager_losses, eager_grads) = results
    for name, value in eager_losses.items():
        assert abs(compiled_losses[name].item() - value.item()) <= 1e-4, name
    assert _max_difference(compiled_grads, eager_grads) <= 1e-4
