"""The batch contract between the data layer and the models and losses: special token ids, part
of speech ids, field names and the direction words a flip mirrors. Light on purpose (no import
beyond the standard library): models and losses import it without loading the data stack.

A batch holds, per process (input_pipeline/pipeline.py builds it):

    frames    uint8 [B, T, H, W, 3]   normalised on device by the model (4x less host->device)
    tokens    int32 [B, L]            [CLS] caption [SEP] PAD..., PAD = PAD_ID
    token_pos int32 [B, L]            Universal POS id of each token's word (0: none):
                                        POS_ID; the pieces of a word share it
    token_idf float32 [B, L]          idf of each token's word over the training captions (0: none)
    knowledge float32 [B, K]          with config.data.knowledge.size = K > 0: the caption's
                                        knowledge classes (text_annotations.KnowledgeVocab of
                                        config.data.dir, for every source), each at its idf, 0
                                        for the absent ones (CLOP)
    clip_id   str   [B]               host-only fields, never sent to the device: the clip's id,
    index     int32 [B]                 its record index in the split,
    caption   str   [B]                 the caption that `tokens` encodes,
    source    int32 [B]                 and (training) its source: 0 for config.data, then the
                                          entries of config.data.mixture in order

With `config.data.text = "question"` (open-ended QA fine-tuning) `tokens` encodes one of the clip's
questions instead (`caption` holds it), there is no `token_pos`, `token_idf` or `knowledge`, and

    answer    int32 [B]               the answer's class in the dataset's answer vocabulary
                                        (text_annotations.AnswerVocab; -1: not among them)
"""

# Fixed special ids so that models and losses can rely on them: 0 pads (the text tower's attention
# mask is `tokens != PAD_ID`), BOS doubles as BERT's [CLS] and EOS as [SEP].
PAD_ID, UNK_ID, CLS_ID, SEP_ID = 0, 1, 2, 3
MASK_ID = 4  # sentencepiece numbers user-defined symbols right after the special ids
FIRST_WORD_ID = 5  # ids from here on are pieces of text

# Universal POS tags; a token's id is its index + 1 (0 = special token, padding or whitespace).
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
POS_ID = {tag: i + 1 for i, tag in enumerate(UPOS)}

HOST_ONLY_FIELDS = ("clip_id", "index", "caption", "source")

# A horizontally flipped clip has these words of its caption swapped, so that a flip never
# contradicts its caption.
MIRROR_WORDS = {"left": "right", "right": "left", "leftward": "rightward", "rightward": "leftward"}
