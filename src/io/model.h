/*
 * model.h - the model file's two halves, for the files that hold a model and more beside it
 * (io/checkpoint.c). Private to the library.
 */
#ifndef BP_MODEL_H
#define BP_MODEL_H

#include "backprop.h"
#include "io/safetensors.h"

/* bp_model_save with extra tensors and metadata keys written after the model's own (names and
 * keys must not collide with them: a checkpoint uses the prefix "trainer."). */
bp_status bp_model_write(const bp_net *net, const char *path, const bp_model_meta *meta,
                         const bp_st_tensor *extra, int n_extra, const bp_st_meta *extra_meta,
                         int n_extra_meta);

/* bp_model_load on a file already read and checked by the container: the net its metadata
 * describes, filled from its tensors. In a checkpoint (metadata key "checkpoint") tensors named
 * "trainer.*" are the trainer's and are left to the caller. */
bp_status bp_model_read(const bp_st_file *f, const bp_net_config *cfg, bp_model_meta *meta,
                        bp_net **out);

/* What a model file and an ONNX export (io/onnx.c) share: the metadata checked against the net
 * (the shape fits its input width, the scale is positive, one class name an output, training
 * is a JSON object), BP_EINVAL naming path when not; and a tensor of the net's tables copied
 * out of its arena (params or state) through its strides into out (count floats), row-major in
 * its shape: PyTorch's layout and ONNX's. */
bp_status bp_model_check_meta(const bp_net *net, const char *path, const bp_model_meta *meta);
void bp_tensor_gather_row_major(float *out, const bp_tensor_info *t, const float *arena);

#endif
