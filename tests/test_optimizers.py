"""The optimizer choice shared by the methods' presets."""

import pytest
import torch

from vosbench.methods.fcn import FCN
from vosbench.methods.optimizers import embedding_and_rest, make_optimizer, modules_faster


def test_each_group_keeps_its_learning_rate_and_the_weight_decay():
    first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    groups = [{"params": first.parameters(), "lr": 1e-3},
              {"params": second.parameters(), "lr": 1e-2}]
    adamw = make_optimizer("adamw", groups, momentum=0.9, weight_decay=1e-4)
    assert isinstance(adamw, torch.optim.AdamW)
    assert [group["lr"] for group in adamw.param_groups] == [1e-3, 1e-2]
    assert {group["weight_decay"] for group in adamw.param_groups} == {1e-4}
    groups = [{"params": first.parameters(), "lr": 0.1}]
    sgd = make_optimizer("sgd", groups, momentum=0.9, weight_decay=5e-4)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["lr"] == 0.1
    adam = make_optimizer("adam", [{"params": first.parameters(), "lr": 1e-5}], momentum=0.9,
                          weight_decay=4e-5)
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["weight_decay"] == 4e-5


def steps(name: str, count: int) -> list[float]:
    """A parameter [1, 1] after `count` steps of `name` (lr 0.1, momentum 0.9, weight decay
    0.01) with the gradient [0.5, −2] each time."""
    parameter = torch.nn.Parameter(torch.ones(2))
    optimizer = make_optimizer(name, [{"params": [parameter], "lr": 0.1}], momentum=0.9,
                               weight_decay=0.01)
    for _ in range(count):
        parameter.grad = torch.tensor([0.5, -2.0])
        optimizer.step()
    return parameter.detach().tolist()


def test_the_fused_updates_match_the_hand_worked_steps():
    # SGD: d = g + 0.01 p; step 1 buffer d = [0.51, −1.99], p = 1 − 0.1 d; step 2 buffer
    # 0.9 × d1 + d2 with d2 = g + 0.01 × [0.949, 1.199]
    assert steps("sgd", 1) == pytest.approx([0.949, 1.199])
    assert steps("sgd", 2) == pytest.approx([0.949 - 0.1 * (0.459 + 0.50949),
                                             1.199 - 0.1 * (-1.791 - 1.98801)])
    # Adam's first step moves each entry by lr against the sign of g + 0.01 p; AdamW's also
    # shrinks p by lr × 0.01 first (decoupled decay)
    assert steps("adam", 1) == pytest.approx([0.9, 1.1])
    assert steps("adamw", 1) == pytest.approx([0.899, 1.099])


def test_unknown_optimizers_are_refused_when_the_method_is_built():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; known: sgd, adam, adamw"):
        FCN(backbone="resnet18", output_stride=16, channels=16, optimizer="lamb")


def test_the_embedding_and_every_other_parameter_get_their_own_rate():
    model = FCN(backbone="resnet18", output_stride=16, channels=16)
    embedding, rest = embedding_and_rest(model, model.embedding, 1e-3, 10.0)
    assert (embedding["lr"], rest["lr"]) == (1e-3, pytest.approx(1e-2))
    assert {id(p) for p in rest["params"]} == {id(p) for p in model.readout.parameters()}
    assert len(embedding["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_chosen_modules_go_faster_and_every_other_parameter_keeps_the_rate():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1),
                                torch.nn.Linear(1, 1))
    rest, faster = modules_faster(model, [model[2], model[3]], 1e-5, 10.0)
    assert (rest["lr"], faster["lr"]) == (1e-5, pytest.approx(1e-4))
    assert [id(p) for p in rest["params"]] == [id(p) for p in model[0].parameters()]
    assert {id(p) for p in faster["params"]} == {id(p) for p in [*model[2].parameters(),
                                                                 *model[3].parameters()]}
