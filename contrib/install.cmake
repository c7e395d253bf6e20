# What `cmake --install` puts where, and the Debian package made from the same
# rules (CPack DEB; contrib/package.sh is the one command). With the prefix
# /usr the config goes to /etc, as in the package; another prefix keeps it
# inside (PREFIX/etc/gitward).
install(TARGETS gitward RUNTIME DESTINATION bin)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/contrib/gitward-reencrypt DESTINATION bin)
install(FILES ${PROJECT_SOURCE_DIR}/contrib/completion/gitward.bash DESTINATION share/bash-completion/completions
        RENAME gitward)
install(FILES ${PROJECT_SOURCE_DIR}/contrib/prometheus/gitward.rules.yml
              ${PROJECT_SOURCE_DIR}/contrib/prometheus/prometheus.yml.example
              ${PROJECT_SOURCE_DIR}/contrib/grafana/gitward-fleet.json
        DESTINATION share/gitward)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/manifests/examples/ DESTINATION share/doc/gitward/examples)
install(FILES ${PROJECT_SOURCE_DIR}/contrib/debian/copyright DESTINATION share/doc/gitward)

# generated at install time, so that the prefix of the install (also one
# given to cmake --install --prefix, and the package's /usr) is the one they
# name: the unit's ExecStart, the config dir; man pages and changelogs are
# compressed (gzip -9n) as Debian policy asks
find_program(GW_GZIP gzip REQUIRED)
set(GW_DEBREV 1 CACHE STRING "Debian revision of the package (contrib/package.sh: GW_DEBREV)")
install(CODE "
  set(prefix \"\${CMAKE_INSTALL_PREFIX}\")
  set(root \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
  if(prefix STREQUAL \"/usr\") # Debian's places: /etc, /lib/systemd/system
    set(GW_SYSCONFDIR /etc)
    set(unitdir \"\$ENV{DESTDIR}/lib/systemd/system\")
  else()
    set(GW_SYSCONFDIR \"\${prefix}/etc\")
    set(unitdir \"\${root}/lib/systemd/system\")
  endif()
  set(etc \"\$ENV{DESTDIR}\${GW_SYSCONFDIR}\")
  set(CMAKE_INSTALL_FULL_BINDIR \"\${prefix}/bin\")
  # the Debian changelog names the package's version (package.sh passes its
  # revision in GW_DEBREV)
  set(GW_VERSION \"${GW_VERSION}\")
  set(GW_DEBREV \"\$ENV{GW_DEBREV}\")
  if(GW_DEBREV STREQUAL \"\")
    set(GW_DEBREV \"${GW_DEBREV}\")
  endif()
  string(TIMESTAMP GW_DEB_DATE \"%a, %d %b %Y %H:%M:%S +0000\" UTC)
  configure_file(\"${PROJECT_SOURCE_DIR}/contrib/debian/changelog.in\" \"${PROJECT_BINARY_DIR}/changelog.Debian\" @ONLY)
  configure_file(\"${PROJECT_SOURCE_DIR}/contrib/systemd/gitward.service.in\"
                 \"\${unitdir}/gitward.service\" @ONLY)
  message(STATUS \"Installing: \${unitdir}/gitward.service\")
  file(MAKE_DIRECTORY \"\${etc}/gitward\")
  file(COPY \"${PROJECT_SOURCE_DIR}/contrib/gitward.yaml\" DESTINATION \"\${etc}/gitward\"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  message(STATUS \"Installing: \${etc}/gitward/gitward.yaml\")
  foreach(pair \"${PROJECT_SOURCE_DIR}/contrib/man/gitward.1;share/man/man1/gitward.1.gz\"
               \"${PROJECT_SOURCE_DIR}/contrib/man/gitward-manifests.5;share/man/man5/gitward-manifests.5.gz\"
               \"${PROJECT_SOURCE_DIR}/contrib/docs/changes.md;share/doc/gitward/changelog.gz\"
               \"${PROJECT_BINARY_DIR}/changelog.Debian;share/doc/gitward/changelog.Debian.gz\")
    list(GET pair 0 src)
    list(GET pair 1 dst)
    get_filename_component(dir \"\${root}/\${dst}\" DIRECTORY)
    file(MAKE_DIRECTORY \"\${dir}\")
    execute_process(COMMAND \"${GW_GZIP}\" -9nc \"\${src}\"
                    OUTPUT_FILE \"\${root}/\${dst}\" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR \"gzip \${src} failed\")
    endif()
    file(CHMOD \"\${root}/\${dst}\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    message(STATUS \"Installing: \${root}/\${dst}\")
  endforeach()
")

# the package: contrib/package.sh runs cpack -G DEB on a build dir
set(CPACK_PACKAGE_NAME gitward)
set(CPACK_PACKAGE_VERSION "${GW_VERSION}")
set(CPACK_PACKAGE_CONTACT "gitward maintainers <maintainers@users.noreply.b-seed-38843dff.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "GitOps agent for hosts: processes, containers and VMs from Git")
set(CPACK_PACKAGE_DESCRIPTION "gitward keeps a host's processes, Podman containers and QEMU VMs as\n\
declared in YAML manifests in a Git repository. It fetches on a timer or a\n\
webhook, plans and applies the difference, adopts what already runs after a\n\
restart, and reports through status, metrics, events and commit statuses.")
set(CPACK_DEBIAN_PACKAGE_RELEASE "${GW_DEBREV}")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # gitward_<version>-<debrev>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://gitward.example/")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # appended to what the unit runs besides gitward:
set(CPACK_DEBIAN_PACKAGE_DEPENDS "procps") # /bin/kill (ExecReload), absent from a bare Debian
# the plugin and gitward-reencrypt use these at run time; age, podman and
# qemu only where manifests ask for them
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "git")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "age, podman, qemu-system-x86, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${PROJECT_SOURCE_DIR}/contrib/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                                WORLD_READ WORLD_EXECUTE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr) # whatever the build dir's own prefix
set(CPACK_SET_DESTDIR ON) # the install code above writes /etc beside /usr
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
include(CPack)
