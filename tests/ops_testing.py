"""Inputs shared by the ops tests."""

import torch


def make_rois(num_rois, batch, height, width, spatial_scale, dtype, generator):
    """RoIs in image pixels, partly or wholly outside the map, some of zero size."""
    img_w, img_h = width / spatial_scale, height / spatial_scale
    xy = torch.rand(num_rois, 2, generator=generator, dtype=torch.float64)
    xy = xy * torch.tensor([1.4 * img_w, 1.4 * img_h], dtype=torch.float64)
    xy -= torch.tensor([0.2 * img_w, 0.2 * img_h], dtype=torch.float64)
    wh = torch.rand(num_rois, 2, generator=generator, dtype=torch.float64)
    wh = wh * torch.tensor([0.7 * img_w, 0.7 * img_h], dtype=torch.float64)
    wh[:3] = 0.0  # zero-size RoIs
    xy[3] = torch.tensor([1.5 * img_w, -0.8 * img_h])  # wholly outside the map
    image = torch.randint(0, batch, (num_rois, 1), generator=generator).to(torch.float64)
    return torch.cat([image, xy, xy + wh], dim=1).to(dtype)


def grads(fn, x, weight):
    x = x.detach().requires_grad_(True)
    out = fn(x)
    (grad,) = torch.autograd.grad((out * weight).sum(), x)
    return out.detach(), grad
