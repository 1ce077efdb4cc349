/*
 * A main() for the fuzz targets when libFuzzer is not linked in: runs the
 * target once on every file named on the command line, or inside a folder
 * named there. The ordinary build uses it to replay the seed corpus as a
 * regression test, so a target that no longer compiles, or an input that
 * once crashed, fails `meson test` and not only the clang fuzz step.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the target on one file; returns 0, or 1 when the file is unreadable. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t size = 0, cap = 0, got;
    int rc = 1;

    if (!f) {
        perror(path);
        return 1;
    }
    for (;;) {
        if (size == cap) {
            uint8_t *grown = realloc(data, cap ? cap * 2 : 4096);

            if (!grown)
                goto out;
            data = grown;
            cap = cap ? cap * 2 : 4096;
        }
        got = fread(data + size, 1, cap - size, f);
        size += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        perror(path);
        goto out;
    }
    LLVMFuzzerTestOneInput(data, size);
    rc = 0;
out:
    free(data);
    fclose(f);
    return rc;
}

/* Runs the target on every regular file of a folder (not recursive). */
static int replay_dir(const char *path, unsigned *count)
{
    DIR *dir = opendir(path);
    struct dirent *entry;
    int failures = 0;

    if (!dir) {
        perror(path);
        return 1;
    }
    while ((entry = readdir(dir)) != NULL) {
        char child[4096];
        struct stat st;

        if (entry->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(child, sizeof(child), "%s/%s", path, entry->d_name) >=
            sizeof(child))
            continue;
        if (stat(child, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        failures += replay_file(child);
        (*count)++;
    }
    closedir(dir);
    return failures;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int failures = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            failures += replay_dir(argv[i], &count);
        } else {
            failures += replay_file(argv[i]);
            count++;
        }
    }
    printf("replayed %u inputs, %d unreadable\n", count, failures);
    return failures == 0 && count > 0 ? 0 : 1;
}
