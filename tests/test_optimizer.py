"""Learning-rate schedules of train.make_optimizer."""
import pytest

from fer_jax import configs, train
from fer_jax.errors import UserError


def test_step_schedule_is_pytorch_steplr_counted_in_epochs():
    config = configs.defaults()
    config.optimizer.update(learning_rate=0.002, accumulation_steps=2)
    config.schedule.update(name="step", step_epochs=4, step_factor=0.9)
    _, schedule = train.make_optimizer(config, steps_per_epoch=10)  # 5 updates per epoch
    assert float(schedule(0)) == pytest.approx(0.002)
    assert float(schedule(19)) == pytest.approx(0.002)        # epoch 4 not finished
    assert float(schedule(20)) == pytest.approx(0.002 * 0.9)  # after 4 epochs
    assert float(schedule(45)) == pytest.approx(0.002 * 0.9**2)


def test_unknown_schedule_names_the_choices():
    config = configs.defaults()
    config.schedule.name = "linear"
    with pytest.raises(UserError, match="inverse_time or step"):
        train.make_optimizer(config, steps_per_epoch=10)
