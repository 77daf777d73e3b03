/* The privacy policy: a model's measured inversion table (the privacy
 * profile `hinge experiment privacy` writes, profiles/privacy/) and the
 * check the decision applies. See partition.h. */
#include <stdlib.h>
#include <string.h>

#include "partition_impl.h"
#include "profile_json.h"

static hinge_status read_cell(const pj_ctx *c, json_t *cell, size_t i, part_privacy_cell *out)
{
    char path[32];
    snprintf(path, sizeof path, "cells[%zu]", i);
    const pj_range unit = {0.0, 1.0, false, false}, any = {0.0, 1e9, false, false};
    double cut, noise, rec;
    const char *codec;
    hinge_status s = pj_number(c, cell, path, "cut", true, &any, 0, &cut);
    if (s == HINGE_OK)
        s = pj_number(c, cell, path, "noise", true, &any, 0, &noise);
    if (s == HINGE_OK)
        s = pj_number(c, cell, path, "token_recovery", true, &unit, 0, &rec);
    if (s == HINGE_OK)
        s = pj_string(c, cell, path, "codec", true, &codec);
    if (s != HINGE_OK)
        return s;
    uint32_t mask = 0;
    if (part_codec_mask_parse(codec, &mask, c->err, c->errlen) != HINGE_OK || (mask & (mask - 1)) != 0)
        return hinge_fail(c->err, c->errlen, HINGE_ERR_FORMAT, "%s: %s.codec: one of f32, f16, q8", c->file, path);
    *out = (part_privacy_cell){.cut = (uint32_t)cut, .codec = (part_codec)__builtin_ctz(mask), .noise = noise,
                               .recovery = rec};
    return HINGE_OK;
}

hinge_status part_privacy_load(const char *path, part_privacy *out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    pj_ctx c = {.file = path, .err = err, .errlen = errlen};
    json_t *root = NULL;
    hinge_status s = pj_read_file(path, &text, &len, err, errlen);
    if (s == HINGE_OK)
        s = pj_parse(&c, text, len, &root);
    free(text);
    const char *kind = NULL, *sha = NULL;
    if (s == HINGE_OK)
        s = pj_string(&c, root, "", "kind", true, &kind);
    if (s == HINGE_OK && strcmp(kind, "hinge-privacy-profile") != 0)
        s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: kind is '%s', not hinge-privacy-profile", path, kind);
    if (s == HINGE_OK)
        s = pj_string(&c, root, "", "sha256", true, &sha);
    json_t *cells = root ? json_object_get(root, "cells") : NULL;
    if (s == HINGE_OK && (!json_is_array(cells) || json_array_size(cells) == 0 ||
                          json_array_size(cells) > PART_PRIVACY_MAX_CELLS))
        s = hinge_fail(err, errlen, HINGE_ERR_FORMAT, "%s: cells must be an array of 1 to %d measured cells", path,
                       PART_PRIVACY_MAX_CELLS);
    part_privacy p = {0};
    if (s == HINGE_OK)
        snprintf(p.sha256, sizeof p.sha256, "%s", sha);
    for (size_t i = 0; s == HINGE_OK && i < json_array_size(cells); i++)
        s = read_cell(&c, json_array_get(cells, i), i, &p.cells[p.n++]);
    json_decref(root);
    if (s == HINGE_OK)
        *out = p;
    return s;
}

double part_privacy_recovery(const part_privacy *p, uint32_t k, part_codec c, double noise)
{
    double best_noise = -1.0, rec = -1.0;
    for (uint32_t i = 0; p && i < p->n; i++) {
        const part_privacy_cell *e = &p->cells[i];
        /* the strongest measured noise not above the session's: less noise never recovers less */
        if (e->cut == k && e->codec == c && e->noise <= noise + 1e-9 && e->noise > best_noise) {
            best_noise = e->noise;
            rec = e->recovery;
        }
    }
    return rec;
}

bool part_privacy_allows(const part_policy *pol, uint32_t k, uint32_t n_layer, part_codec c)
{
    if (pol->max_recovery <= 0.0 || k >= n_layer)
        return true; /* no policy; or nothing crosses the wire */
    double rec = part_privacy_recovery(pol->privacy, k, c, pol->noise);
    return rec >= 0.0 && rec <= pol->max_recovery; /* unmeasured: refused */
}
