"""The two token ids every layer agrees on, in a module that imports nothing (numpy code reads them too).

0 [PAD] fills right-padded windows; 1 [UNK] is an unseen transaction, and the one-token window of a
user's first event. The tokenizer's other reserved ids are in `models.tokenizer.reserved`.
"""

PAD_ID = 0
UNK_ID = 1
