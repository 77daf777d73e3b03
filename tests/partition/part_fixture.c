/* Hand-made profiles: see part_fixture.h. */
#include "part_fixture.h"

#include <string.h>

void fx_model(part_model *m, uint32_t n_layer)
{
    memset(m, 0, sizeof *m);
    strcpy(m->name, "fixture");
    m->n_layer = n_layer;
    m->n_embd = 64;
    m->n_vocab = 1000;
    m->n_ctx_train = 4096;
    for (uint32_t i = 0; i < n_layer; i++)
        m->layer[i] = (part_model_layer){.flops_per_pos = 1e6, .flops_per_attended = 0, .weight_bytes = 1e6,
                                         .kv_elems_per_pos = 256, .window = 0};
    m->embed_flops_per_pos = 128;
    m->embed_row_bytes = 100;
    m->embed_table_bytes = 1e5;
    m->head_flops = 1e5;
    m->head_weight_bytes = 1e5;
}

void fx_compute(part_compute *c, part_role role, const part_model *m, double decode_us, double prefill_us,
                double head_us)
{
    memset(c, 0, sizeof *c);
    strcpy(c->name, role == PART_ROLE_DEVICE ? "fx-device" : "fx-edge");
    c->role = role;
    c->meas.present = true;
    c->meas.n_layer = m->n_layer;
    c->meas.n_embd = m->n_embd;
    for (uint32_t i = 0; i < m->n_layer; i++)
        c->meas.layer[i] = (part_layer_cost){.prefill_us_per_pos = prefill_us, .decode_us = decode_us};
    c->meas.head_us = head_us;
    c->mem_bytes = role == PART_ROLE_DEVICE ? 1e9 : 0;
    c->kv_elem_bytes = 4;
    if (role == PART_ROLE_DEVICE) {
        c->power_compute_w = 1;
        c->power_tx_w = 2;
        c->power_rx_w = 1;
    }
}

void fx_channel(part_channel *ch, double up_mbps, double down_mbps, double rtt_ms)
{
    memset(ch, 0, sizeof *ch);
    strcpy(ch->name, "fx-channel");
    ch->up_bps = up_mbps * 1e6;
    ch->down_bps = down_mbps * 1e6;
    ch->rtt_s = rtt_ms * 1e-3;
}

void fx_inputs(part_inputs *in, const part_model *m, const part_compute *dev, const part_compute *edge,
               const part_channel *ch, uint32_t prompt_len, uint32_t new_tokens)
{
    *in = (part_inputs){.model = m, .device = dev, .edge = edge, .channel = ch, .load = {.queue_us = -1},
                        .req = {.prompt_len = prompt_len, .new_tokens = new_tokens, .connected = true}};
}
