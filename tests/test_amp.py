"""Mixed precision on the CPU: ``--amp`` means bfloat16 autocast there.

The backbone runs in bfloat16, while RPN outputs, proposals, target sampling, RoI pooling, head
outputs and losses stay float32 (the model upcasts autocast outputs; see
``fasterrcnn.model.precision``).  Training a few iterations of a tiny model keeps every loss
finite, float32 and close to the float32 model's.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List

import pytest
import torch
from conftest import TINY_MODEL

from fasterrcnn.config import load_config
from fasterrcnn.engine.trainer import Trainer, TrainOptions
from fasterrcnn.model import build_model

NUM_CLASSES = 3
# fmt: off
TINY = TINY_MODEL + [
    "NET", "res18", "BACKBONE.NORM", "gn", "BACKBONE.STYLE", "pytorch", "RESNET.FIXED_BLOCKS", "0",
    "PIXEL_STDS", "[57.4, 57.1, 58.4]", "TRAIN.LEARNING_RATE", "0.01", "TRAIN.WARMUP_ITERS", "0",
    "TRAIN.MAX_ITERS", "4", "TRAIN.DISPLAY", "1",
]
# fmt: on
LOSSES = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")


pytestmark = pytest.mark.usefixtures("one_thread")


def batch(seed: int = 1, height: int = 64, width: int = 96):
    gen = torch.Generator().manual_seed(seed)
    im_data = torch.randn(2, 3, height, width, generator=gen)
    im_info = torch.tensor([[height, width, 1.0]] * 2)
    gt_boxes = torch.zeros(2, 20, 5)
    gt_boxes[0, :2] = torch.tensor([[4.0, 6.0, 40.0, 50.0, 1.0], [50.0, 10.0, 90.0, 40.0, 2.0]])
    gt_boxes[1, :1] = torch.tensor([[30.0, 20.0, 70.0, 60.0, 1.0]])
    return im_data, im_info, gt_boxes, torch.tensor([2, 1])


def tiny_model():
    torch.manual_seed(0)
    return build_model(load_config(None, TINY), NUM_CLASSES)


class DtypeRecorder:
    """Records the dtypes of inputs and outputs of the model's stages."""

    def __init__(self, model) -> None:
        self.seen: Dict[str, List[torch.dtype]] = {}
        stages = {
            "base_out": (model.base, "out"),
            "proposal_in": (model.rpn.proposal_layer, "in"),
            "anchor_target_in": (model.rpn.anchor_target_layer, "in"),
            "proposal_target_in": (model.roi_head.proposal_target_layer, "in"),
            "pool_in": (model.roi_head.pooler, "in"),
            "pool_out": (model.roi_head.pooler, "out"),
        }
        self.handles = []
        for name, (module, where) in stages.items():
            if where == "in":
                hook = module.register_forward_pre_hook(self._inputs(name))
            else:
                hook = module.register_forward_hook(self._output(name))
            self.handles.append(hook)

    def _inputs(self, name):
        def hook(module, args):
            self.seen.setdefault(name, []).extend(
                a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point()
            )

        return hook

    def _output(self, name):
        def hook(module, args, out):
            self.seen.setdefault(name, []).append(out.dtype)

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def test_autocast_losses_are_float32_and_ops_get_float32():
    model = tiny_model()
    model.train()
    recorder = DtypeRecorder(model)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        losses = model(*batch())
    recorder.remove()
    assert recorder.seen["base_out"] == [torch.bfloat16]  # autocast is really on
    for name in ("proposal_in", "anchor_target_in", "proposal_target_in", "pool_in", "pool_out"):
        assert recorder.seen[name] and set(recorder.seen[name]) == {torch.float32}, name
    assert set(losses) == set(LOSSES)
    for name, value in losses.items():
        assert value.dtype == torch.float32, name
        assert math.isfinite(value.item()), name
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(
        g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads
    )


def test_autocast_losses_close_to_float32():
    """Same model, same sampling stream: bfloat16 convolutions move the losses only a little."""
    model = tiny_model()
    model.train()
    state = model.generator.get_state()
    reference = model(*batch())
    model.generator.set_state(state)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        amp = model(*batch())
    for name in ("rpn_cls", "rcnn_cls"):  # the box losses depend on the sampled set's boxes
        got, want = amp[name].item(), reference[name].item()
        assert abs(got - want) < 0.05 * want, (name, got, want)


def test_autocast_eval_outputs_float32_and_postprocess():
    model = tiny_model()
    model.eval()
    im_data, im_info = batch()[:2]
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        rois, cls_prob, bbox_pred = model(im_data, im_info)
    assert rois.dtype == cls_prob.dtype == bbox_pred.dtype == torch.float32
    real = cls_prob.sum(dim=2) > 0
    torch.testing.assert_close(cls_prob.sum(dim=2)[real], torch.ones(int(real.sum())))
    dets = model.postprocess(rois, cls_prob, bbox_pred, im_info)
    assert len(dets) == 2 and all(d["boxes"].dtype == torch.float32 for d in dets)


def test_trainer_amp_trains_with_finite_float32_losses(tmp_path):
    cfg = load_config(None, TINY)
    model = tiny_model()
    recorder = DtypeRecorder(model)
    batches = [batch(seed) for seed in range(4)]
    options = TrainOptions(
        save_dir=str(tmp_path), device="cpu", disp_interval=1, amp="bf16", progress=False
    )
    trainer = Trainer(
        cfg,
        model,
        lambda epoch, start: batches[start:],
        len(batches),
        ("__background__", "a", "b"),
        options,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    records = []
    trainer.log.listeners.append(lambda step, record: records.append((step, record)))
    trainer.train()
    recorder.remove()
    assert trainer.state.global_step == 4
    assert torch.bfloat16 in recorder.seen["base_out"]
    assert set(recorder.seen["pool_in"]) == {torch.float32}
    assert [step for step, _ in records] == [1, 2, 3, 4]
    for _, record in records:
        for name in LOSSES + ("loss",):
            assert math.isfinite(record[name]), record
    changed = [
        k
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert changed
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_trainval_net_amp_flag_runs_on_cpu(tmp_path):
    from fasterrcnn.commands import train as trainval_net

    # fmt: off
    argv = [
        "--dataset", "shapes", "--quiet", "--device", "cpu", "--amp", "--bs", "2", "--max_iters",
        "2", "--save_dir", str(tmp_path / "models"), "--set", "DATA_DIR", str(tmp_path / "data"),
        "DATASET.SHAPES_NUM_TRAIN", "4", "DATASET.SHAPES_NUM_TEST", "2", "TRAIN.SCALES", "[96]",
        "TRAIN.MAX_SIZE", "160", "BACKBONE.WIDTH_MULT", "0.125", "RPN_CHANNELS", "16",
        "TRAIN.BATCH_SIZE", "16", "TRAIN.RPN_PRE_NMS_TOP_N", "200",
        "TRAIN.RPN_POST_NMS_TOP_N", "40", "TRAIN.NONFINITE_POLICY", "stop",
    ]
    # fmt: on
    assert trainval_net.main(argv) == 0
    saved = [
        os.path.join(root, f)
        for root, _, files in os.walk(tmp_path / "models")
        for f in files
        if f.endswith(".pth")
    ]
    assert saved
    ckpt = torch.load(saved[0], map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize(
    "config_amp,argument,expected",
    [("bf16", None, torch.bfloat16), ("bf16", "none", None), ("none", "bf16", torch.bfloat16)],
)
def test_training_run_precision_is_the_configs_unless_the_caller_chooses(
    tmp_path, tiny_data_dir, config_amp, argument, expected
):
    """TRAIN.AMP chooses the precision of a recipe; an explicit amp (``--amp``) overrides it."""
    from pathlib import Path

    from conftest import tiny_overrides

    from fasterrcnn.engine.training_run import build_training_run

    shapes_yml = Path(__file__).resolve().parents[1] / "cfgs" / "shapes.yml"
    cfg = load_config(str(shapes_yml), tiny_overrides(tiny_data_dir) + ["TRAIN.AMP", config_amp])
    trainer = build_training_run(cfg, str(tmp_path), amp=argument, progress=False)
    assert trainer.amp_dtype == expected
