#ifndef PKG02_L02_01_H
#define PKG02_L02_01_H
#include <string>
#include <vector>

namespace l02_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_01

#endif
