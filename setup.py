from setuptools import find_packages, setup

setup(
    name="vl-jax",
    version="0.1.0",
    description="Video-language pre-training in JAX/Flax: TACo, MILES, CoCo-BERT and CLOP on one backbone",
    python_requires=">=3.10",
    packages=find_packages(include=["vl_jax*", "input_pipeline*", "configs*"]),
    install_requires=[
        "jax>=0.10.2,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "grain>=0.2.18,<0.3",
        "array-record>=0.8.6",
        "ml-collections>=1.1",
        "sentencepiece>=0.2",
        "absl-py>=2.1",
        "msgpack>=1.0",
        "numpy>=2.0",
        "pillow>=11.0",
        "tensorboardX>=2.6",
    ],
    extras_require={"test": ["pytest>=8"]},
)
