"""Small helpers shared by several test files."""


def scale_head(model, factor):
    """Multiply the head's weights by ``factor``: a blow-up on demand, in either framework."""
    if model.framework == "torch":
        import torch
        with torch.no_grad():
            for p in model.head.parameters():
                p.mul_(factor)
    else:
        for v in model.head.weights:
            v.assign(v * factor)
