# FindBoringSSL: Debian's android-libboringssl-dev puts headers under
# /usr/include/android and the shared libraries (libssl.so.0, libcrypto.so.0)
# under /usr/lib/<multiarch>/android, outside the loader's search path, and
# ships no pkg-config file. This module finds that layout and defines the
# imported target BoringSSL::ssl (which brings BoringSSL::crypto) with the
# include directory; users add an rpath to BORINGSSL_LIBDIR.
find_path(BORINGSSL_INCLUDE_DIR openssl/base.h
          PATHS /usr/include/android NO_DEFAULT_PATH)
find_library(BORINGSSL_SSL_LIBRARY NAMES libssl.so.0 ssl
             PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android NO_DEFAULT_PATH)
find_library(BORINGSSL_CRYPTO_LIBRARY NAMES libcrypto.so.0 crypto
             PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android NO_DEFAULT_PATH)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BoringSSL REQUIRED_VARS
  BORINGSSL_INCLUDE_DIR BORINGSSL_SSL_LIBRARY BORINGSSL_CRYPTO_LIBRARY)
if(BoringSSL_FOUND)
  get_filename_component(BORINGSSL_LIBDIR ${BORINGSSL_SSL_LIBRARY} DIRECTORY)
  if(NOT TARGET BoringSSL::crypto)
    add_library(BoringSSL::crypto SHARED IMPORTED)
    set_target_properties(BoringSSL::crypto PROPERTIES
      IMPORTED_LOCATION ${BORINGSSL_CRYPTO_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${BORINGSSL_INCLUDE_DIR}
      INTERFACE_COMPILE_DEFINITIONS "SLUICE_BORINGSSL=1")
    add_library(BoringSSL::ssl SHARED IMPORTED)
    set_target_properties(BoringSSL::ssl PROPERTIES
      IMPORTED_LOCATION ${BORINGSSL_SSL_LIBRARY}
      INTERFACE_LINK_LIBRARIES BoringSSL::crypto)
  endif()
endif()
