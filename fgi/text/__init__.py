"""The "why" of the method: prompt templates (a registry in ``templates.yaml``), lesion descriptions from
mask morphology or a local vision-language model (``describe``, ``morphology``, ``vlm``), their text
embeddings from a local encoder (``encode``, ``embeddings``), and the cache that holds them. Text code
never imports the data part."""
