r"""Pre-trains a video-text model.

    python main.py --config configs/tiny.py --workdir /tmp/vl_jax_tiny [--config.FIELD=VALUE ...]

Re-running the same command resumes from the workdir's newest good checkpoint, with the config the
run recorded as the default (overrides still apply); a resume that changes the data or model
fields stops unless --accept_config_change.
"""

from absl import flags, logging

from vl_jax import cli
from vl_jax.train import loop

_ACCEPT = flags.DEFINE_bool("accept_config_change", False,
                            "resume even though the data or model fields differ from the "
                            "workdir's recorded config")


def main():
  logging.info("workdir: %s", cli.WORKDIR.value)
  loop.train_and_evaluate(cli.config(cli.WORKDIR.value), cli.WORKDIR.value,
                          config_source=cli.config_source(), accept_config_change=_ACCEPT.value)


if __name__ == "__main__":
  cli.run(main)
