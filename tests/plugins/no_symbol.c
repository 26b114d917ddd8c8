/* A shared object that is not a plugin: it exports no `serve_plugin`. */
int not_a_plugin(void);

int not_a_plugin(void)
{
    return 42;
}
