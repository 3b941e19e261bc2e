"""Weights of other codebases into the towers (BERT-family text, ViT image) and this codebase's
own exported models: readers that return flat {parameter path: array} trees in the model's
layout."""
