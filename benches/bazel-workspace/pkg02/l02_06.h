#ifndef PKG02_L02_06_H
#define PKG02_L02_06_H
#include <string>
#include <vector>

namespace l02_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_06

#endif
