"""Honest transfer: with the same budget, pre-trained weights beat the same network from scratch."""
import pytest

import ftkit


@pytest.fixture(scope="module")
def fashion_small():
    # 30 images per class for training (300), 20 per class to validate and test
    return ftkit.load_dataset("fashion_mnist", verbose=False).subset(30, eval_n=20)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_pretrained_beats_scratch(framework, fashion_small):
    acc = {}
    for pretrained in (True, False):
        model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=64,
                                 pretrained=pretrained, verbose=False)
        ftkit.finetune(model, fashion_small, epochs=3, lr=1e-3, batch_size=32, seed=0, progress=False)
        acc[pretrained] = ftkit.evaluate(model, fashion_small, "test")["accuracy"]
    print(framework, acc)
    assert acc[True] >= 0.55, acc            # chance is 0.10
    assert acc[True] >= acc[False] + 0.15, acc
