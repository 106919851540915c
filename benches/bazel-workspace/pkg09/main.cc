#include "pkg09/l09_00.h"
#include "pkg09/l09_01.h"
#include "pkg09/l09_02.h"
#include "pkg09/l09_03.h"
#include "pkg09/l09_04.h"
#include "pkg09/l09_05.h"
#include "pkg09/l09_06.h"
#include "pkg09/l09_07.h"
#include "pkg09/l09_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l09_00::describe(argc) << "\n";
  std::cout << l09_01::describe(argc) << "\n";
  std::cout << l09_02::describe(argc) << "\n";
  std::cout << l09_03::describe(argc) << "\n";
  std::cout << l09_04::describe(argc) << "\n";
  std::cout << l09_05::describe(argc) << "\n";
  std::cout << l09_06::describe(argc) << "\n";
  std::cout << l09_07::describe(argc) << "\n";
  std::cout << l09_08::describe(argc) << "\n";
  return 0;
}
