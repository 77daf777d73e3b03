/* A QEMU TCG plugin that counts the guest instructions executed: for
 * scripts/arm64-insns, which compares kernel sets under qemu-aarch64.
 *
 *   qemu-aarch64 -plugin ./insn_count.so -d plugin PROGRAM
 *
 * prints "insns N simd S ldst L" through qemu's log (-d plugin) at exit:
 * every guest thread's, so run the measured code on one. For an AArch64
 * guest, S counts the scalar-FP and Advanced SIMD data-processing
 * instructions (encoding bits 28:25 = x111) and L the loads and stores
 * (x1x0, into any register): what the vector and load/store pipes of a
 * core execute. The few declarations of the
 * plugin API (version 1, as in Debian 12's QEMU 7.2) are written here:
 * Debian ships no qemu-plugin.h. Not part of hinge's build. */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* Not atomic: exact for one guest thread (run the measured code on one). */
static uint64_t total, simd, ldst;

/* Each translation block adds its counts every time it runs. */
static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t ns = 0, nl = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t op = 0;
        if (qemu_plugin_insn_size(insn) != 4)
            continue;
        memcpy(&op, qemu_plugin_insn_data(insn), 4);
        const uint32_t op0 = op >> 25 & 0xF;
        ns += (op0 & 0x7) == 0x7;
        nl += (op0 & 0x5) == 0x4;
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    if (ns)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &simd, ns);
    if (nl)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &ldst, nl);
}

static void on_exit(qemu_plugin_id_t id, void *p)
{
    (void)id;
    (void)p;
    char line[128];
    snprintf(line, sizeof line, "insns %" PRIu64 " simd %" PRIu64 " ldst %" PRIu64 "\n", total, simd, ldst);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
