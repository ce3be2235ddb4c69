"""Text fine-tuning: MiniLM learns movie-review sentiment in both frameworks from 200 snippets."""
import pytest

import ftkit


@pytest.fixture(scope="module")
def reviews():
    # 100 snippets per class to train, 50 per class to validate and test (offline copy)
    return ftkit.load_dataset("rotten_tomatoes", source="offline", verbose=False).subset(100, eval_n=50)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_minilm_learns_sentiment(framework, reviews):
    model = ftkit.load_model("minilm", framework=framework, num_classes=2, verbose=False)
    run = ftkit.finetune(model, reviews, strategy="partial", trainable_groups=3, epochs=3, lr=1e-4,
                         batch_size=16, progress=False)
    acc = ftkit.evaluate(model, reviews, "test")["accuracy"]
    print(framework, [e["val_accuracy"] for e in run.history["epochs"]], acc)
    assert run.history["epochs"][-1]["trainable_mask"] == [False, False, True, True, True]
    assert acc >= 0.62, acc  # chance is 0.5 (balanced test subset)
