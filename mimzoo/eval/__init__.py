"""Downstream evaluation of frozen and fine-tuned encoders: k-NN, linear and attentive probes, fine-tuning.

The public entry point is :func:`mimzoo.evaluate` (``mimzoo.api.evaluate``); the modules here
hold the parts: :mod:`.features` (extraction + cache), :mod:`.knn`, :mod:`.linear`,
:mod:`.attentive`, :mod:`.finetune` and :mod:`.results` (records and the Hub model-index).
"""
