/* Bearer tokens -> role (proto/HTTP.md "Authentication"); the config keeps only their hashes. */
#include "lmxd_internal.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>

/* The token lists are replaced by a reload, under s->lock. */
int lmxd_role_of(server *s, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    uint8_t hash[32];
    int bearer = h && strncasecmp(h, "Bearer ", 7) == 0;
    if (bearer)
        lmxd_token_hash(h + 7, hash);
    int admin = 0, read = 0;
    pthread_rwlock_rdlock(&s->lock);
    int has_auth = s->cfg.has_auth;
    /* Compare against every hash (constant time each) so timing says nothing about which matched. */
    for (int i = 0; bearer && has_auth && i < s->cfg.n_admin; i++)
        admin |= sodium_memcmp(hash, s->cfg.admin_hashes[i], 32) == 0;
    for (int i = 0; bearer && has_auth && i < s->cfg.n_read; i++)
        read |= sodium_memcmp(hash, s->cfg.read_hashes[i], 32) == 0;
    pthread_rwlock_unlock(&s->lock);
    if (!has_auth)
        return ROLE_ADMIN;
    return admin ? ROLE_ADMIN : read ? ROLE_READ : ROLE_NONE;
}
