/* The decision: the feasible (k, codec) of least objective. */
#include <math.h>

#include "partition_impl.h"

const char *part_infeasible_name(part_infeasible why)
{
    switch (why) {
    case PART_OK: return "ok";
    case PART_BELOW_FLOOR: return "below privacy floor";
    case PART_OVER_MEMORY: return "over memory cap";
    case PART_NO_EDGE: return "no edge";
    case PART_OVER_RECOVERY: return "over the privacy policy's recovery";
    case PART_IN_PRIVATE_HEAD: return "inside the private head";
    }
    return "unknown";
}

/* Best allowed codec for cut k (NONE at k = N): least objective, the more
 * exact codec on ties. */
static hinge_status best_for_cut(const part_inputs *in, uint32_t k, uint32_t mask, part_prediction *out, char *err,
                                 size_t errlen)
{
    if (k == in->model->n_layer)
        return part_predict(in, k, PART_CODEC_NONE, out, err, errlen);
    bool have = false, have_private = false;
    for (int c = PART_CODEC_F32; c <= PART_CODEC_Q8; c++) {
        if (!(mask & (1u << c)))
            continue;
        part_prediction p;
        hinge_status s = part_predict(in, k, (part_codec)c, &p, err, errlen);
        if (s != HINGE_OK)
            return s;
        /* a codec the privacy policy allows beats any it refuses */
        bool ok = part_privacy_allows(&in->pol, k, in->model->n_layer, (part_codec)c);
        if (!ok && p.why == PART_OK)
            p.why = PART_OVER_RECOVERY;
        if (!have || (ok && !have_private) || (ok == have_private && p.objective < out->objective)) {
            *out = p;
            have = true;
            have_private = have_private || ok;
        }
    }
    if (!have)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "the policy allows no wire codec");
    return HINGE_OK;
}

hinge_status part_decide(const part_inputs *in, part_prediction *table, size_t table_cap, part_decision *out,
                         char *err, size_t errlen)
{
    if (!in || !in->model)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "the partitioner needs a model");
    uint32_t N = in->model->n_layer;
    if (table && table_cap < (size_t)N + 1)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "a table of %zu entries cannot hold cuts 0..%u", table_cap,
                          N);
    if (in->pol.max_recovery > 0.0 && !in->pol.privacy)
        return hinge_fail(err, errlen, HINGE_ERR_INVALID, "a maximum recovery needs the model's privacy profile");
    if (in->pol.min_cut > N)
        return hinge_fail(err, errlen, HINGE_ERR_RANGE, "the privacy floor k >= %u is over the model's %u layers",
                          in->pol.min_cut, N);
    uint32_t mask = in->pol.codec_mask ? in->pol.codec_mask : PART_CODEC_MASK_DEFAULT;
    part_prediction best = {0};
    bool found = false;
    for (uint32_t k = 0; k <= N; k++) {
        part_prediction p;
        hinge_status s = best_for_cut(in, k, mask, &p, err, errlen);
        if (s != HINGE_OK)
            return s;
        if (table)
            table[k] = p;
        if (p.why == PART_OK && isfinite(p.objective) && (!found || p.objective <= best.objective)) {
            best = p;
            found = true;
        }
    }
    if (!found)
        return hinge_fail(err, errlen, HINGE_ERR_RANGE,
                          "no cut is feasible: each of 0..%u is below the privacy floor %u, over the memory cap, "
                          "over the privacy policy's recovery, or needs an edge",
                          N, in->pol.min_cut);
    *out = (part_decision){.cut = best.cut, .codec = best.codec, .chosen = best};
    return HINGE_OK;
}
