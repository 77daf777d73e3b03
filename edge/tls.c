/* The OpenSSL server context: TLS 1.3 only, ALPN "h2" only. */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "edge_impl.h"

/* Accepts the client's offer only if it lists h2: HTTP/1.1 is not served. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static hinge_status ssl_fail(char *err, size_t errlen, const char *what, const char *path)
{
    char detail[160];
    ERR_error_string_n(ERR_get_error(), detail, sizeof detail);
    ERR_clear_error();
    return hinge_fail(err, errlen, HINGE_ERR_IO, "%s %s: %s", what, path ? path : "", detail);
}

void edge_tls_client(SSL *ssl, char *out, size_t cap)
{
    out[0] = '\0';
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (!peer)
        return;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
        /* RFC 2253 text of the subject, e.g. "CN=phone-7,O=Operator" */
        BIO *b = BIO_new(BIO_s_mem());
        if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
            int n = BIO_read(b, out, (int)cap - 1);
            out[n > 0 ? n : 0] = '\0';
        }
        BIO_free(b);
    }
    X509_free(peer);
}

/* Client certificates signed by the CAs in client_ca are verified; with
 * require, a client without one fails the handshake. */
static bool set_client_ca(SSL_CTX *ctx, const char *client_ca, bool require, char *err, size_t errlen)
{
    if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
        ssl_fail(err, errlen, "cannot load client CA", client_ca);
        return false;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (require ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
    return true;
}

SSL_CTX *edge_tls_create(const char *cert, const char *key, const char *client_ca, bool require, char *err,
                         size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_fail(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
        ssl_fail(err, errlen, "cannot require TLS 1.3", NULL);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_fail(err, errlen, "cannot load certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_fail(err, errlen, "cannot load private key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_fail(err, errlen, "private key does not match certificate", cert);
        goto fail;
    }
    if (client_ca && !set_client_ca(ctx, client_ca, require, err, errlen))
        goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
