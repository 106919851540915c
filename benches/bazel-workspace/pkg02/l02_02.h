#ifndef PKG02_L02_02_H
#define PKG02_L02_02_H
#include <string>
#include <vector>

namespace l02_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_02

#endif
