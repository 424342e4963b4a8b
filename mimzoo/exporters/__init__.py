"""Deployment exporters: verified ONNX, INT8 for CPU, TensorRT engines for GPU, and benchmarks.

One module per job, so a reader finds each by name:

- ``spec``          what to export (format, precision, batch, opset) and the verification tolerances;
- ``onnx``          PyTorch -> ONNX (torch's dynamo exporter, TorchScript fallback), fp16 conversion;
- ``quantize``      ONNX Runtime INT8 (dynamic and static QDQ), searched until the accuracy gate passes;
- ``tensorrt``      TensorRT engines: profiles, precision flags, cache keys, engine metadata and the
                    compatibility rule, calibration batches, supported versions (no GPU needed);
- ``trt_build``     the builder calls that need tensorrt and CUDA (``build_engine``: parser, config,
                    entropy calibrator); tests run it on the CPU against tests/trt_double;
- ``trt_runner``    loads and runs engines, refusing ones built for another GPU or TensorRT version;
- ``verify``        PyTorch vs the exported model on random and real images, and the k-NN check;
- ``images``        real images for verification and calibration (scikit-learn digits, image folders);
- ``metadata``      export.json, its copy in the ONNX metadata_props, provenance, reading a folder back;
- ``pipeline``      export -> verify -> write atomically (what ``mimzoo export`` / ``mimzoo verify`` run),
                    with ``pipeline_trt`` for the TensorRT branch;
- ``runtime``       embeds images with an export folder using only onnxruntime, numpy and PIL (no torch);
- ``bench``         ``mimzoo bench``: backends side by side; ``bench_backends`` (what each backend runs),
                    ``bench_memory`` (peak memory in a child interpreter), ``chart`` (the PNG, drawn with PIL).

The package is named ``exporters`` (not ``export``) because ``mimzoo.export`` is the public
function: importing a subpackage ``mimzoo.export`` would replace that attribute with the package.
Nothing here imports torch, timm, onnx, onnxruntime or tensorrt at module level (a few import numpy).
"""
