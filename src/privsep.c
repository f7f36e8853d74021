/* privsep.c - entering the jail and giving up root (see privsep.h).
 *
 * Order matters: chroot needs root, setgroups needs root, and the gid must
 * change before the uid. Afterwards we prove the change cannot be undone:
 * a process that could still become root must not go on.
 */
#include "privsep.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int privsep_lookup(const struct config *cfg, struct run_as *ra, char *err, size_t errlen)
{
    ra->jailed = geteuid() == 0;
    if (!ra->jailed) {
        ra->uid = geteuid();
        ra->gid = getegid();
        return 0;
    }
    struct passwd *pw = getpwnam(cfg->run_as_user);
    if (!pw) {
        snprintf(err, errlen,
                 "run_as_user '%s' does not exist; create it with: useradd -r -g %s -s "
                 "/usr/sbin/nologin -d /nonexistent %s",
                 cfg->run_as_user, cfg->run_as_group, cfg->run_as_user);
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen, "run_as_user '%s' has uid 0; it must be an unprivileged user",
                 cfg->run_as_user);
        return -1;
    }
    struct group *gr = getgrnam(cfg->run_as_group);
    if (!gr) {
        snprintf(err, errlen, "run_as_group '%s' does not exist; create it with: groupadd -r %s",
                 cfg->run_as_group, cfg->run_as_group);
        return -1;
    }
    if (gr->gr_gid == 0) {
        snprintf(err, errlen, "run_as_group '%s' has gid 0; it must be an unprivileged group",
                 cfg->run_as_group);
        return -1;
    }
    ra->uid = pw->pw_uid;
    ra->gid = gr->gr_gid;
    return 0;
}

static int fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s: %s", what, strerror(errno));
    return -1;
}

static int verify_no_way_back(const struct run_as *ra, char *err, size_t errlen)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
        return fail(err, errlen, "getresuid");
    if (ruid != ra->uid || euid != ra->uid || suid != ra->uid || rgid != ra->gid ||
        egid != ra->gid || sgid != ra->gid) {
        snprintf(err, errlen, "user or group ids did not all change");
        return -1;
    }
    if (getgroups(0, NULL) != 0) {
        snprintf(err, errlen, "supplementary groups are still set");
        return -1;
    }
    if (setuid(0) == 0 || setgid(0) == 0) {
        snprintf(err, errlen, "root could be regained after dropping privileges");
        return -1;
    }
    return 0;
}

int privsep_enter_jail(const struct config *cfg, const struct run_as *ra, char *err, size_t errlen)
{
    if (ra->jailed) {
        if (chroot(cfg->jail_dir) < 0)
            return fail(err, errlen, "chroot");
        if (chdir("/") < 0)
            return fail(err, errlen, "chdir /");
        if (setgroups(0, NULL) < 0)
            return fail(err, errlen, "setgroups");
        if (setresgid(ra->gid, ra->gid, ra->gid) < 0)
            return fail(err, errlen, "setresgid");
        if (setresuid(ra->uid, ra->uid, ra->uid) < 0)
            return fail(err, errlen, "setresuid");
        if (verify_no_way_back(ra, err, errlen) < 0)
            return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS)");
    /* A worker must not leave core files with message contents lying around. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return fail(err, errlen, "prctl(PR_SET_DUMPABLE)");
    return 0;
}
