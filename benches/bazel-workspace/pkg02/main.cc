#include "pkg02/l02_00.h"
#include "pkg02/l02_01.h"
#include "pkg02/l02_02.h"
#include "pkg02/l02_03.h"
#include "pkg02/l02_04.h"
#include "pkg02/l02_05.h"
#include "pkg02/l02_06.h"
#include "pkg02/l02_07.h"
#include "pkg02/l02_08.h"
#include <iostream>

int main(int argc, char**) {
  std::cout << l02_00::describe(argc) << "\n";
  std::cout << l02_01::describe(argc) << "\n";
  std::cout << l02_02::describe(argc) << "\n";
  std::cout << l02_03::describe(argc) << "\n";
  std::cout << l02_04::describe(argc) << "\n";
  std::cout << l02_05::describe(argc) << "\n";
  std::cout << l02_06::describe(argc) << "\n";
  std::cout << l02_07::describe(argc) << "\n";
  std::cout << l02_08::describe(argc) << "\n";
  return 0;
}
